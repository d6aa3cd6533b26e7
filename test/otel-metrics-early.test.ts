import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { metrics } from '@opentelemetry/api';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type MetricData } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { scrape, startServer, sum, until } from './helpers/http.js';

/**
 * A stream opened before the MeterProvider is registered (as under `register`, which starts the SDK after an
 * async import) is not counted in any OTel instrument, from its open to its close: the observable counters
 * (read from the open streams at each collection) must not add its bytes while it is open and drop them when
 * it closes, which a backend reads as a counter reset. Through the built package; its own file, so no
 * provider is registered when the first stream opens.
 */

const dist = resolve('dist/esm/index.js');
type Lib = typeof import('../src/index.js');
let ss: Lib;
beforeAll(async () => {
  if (!existsSync(dist)) throw new Error('dist/esm/index.js is missing: run `npm run build` first');
  ss = (await import(dist)) as Lib;
});
afterAll(() => metrics.disable());

const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });

async function collect(): Promise<Map<string, MetricData>> {
  exporter.reset();
  await reader.forceFlush();
  const out = new Map<string, MetricData>();
  for (const rm of exporter.getMetrics()) for (const sm of rm.scopeMetrics) if (sm.scope.name === 'streamscope') for (const m of sm.metrics) out.set(m.descriptor.name, m);
  return out;
}

const total = (m: MetricData | undefined, route: string): number =>
  (m?.dataPoints ?? []).filter((p) => p.attributes.route === route).reduce((a, p) => a + (p.value as number), 0);

const COUNTERS = ['stream_bytes_written_total', 'stream_writes_total'] as const;

describe('OpenTelemetry metrics: a stream opened before the MeterProvider', () => {
  it('is never counted, so stream_bytes_written_total (monotonic) never decreases across collections', async () => {
    const route = '/early';
    const registry = new Registry();
    // Each request writes `n` events of 100 bytes (its path says how many), then holds until its gate opens.
    const gates = new Map<string, () => void>();
    const srv = await startServer(
      ss.instrument(
        async (req: http.IncomingMessage, res: http.ServerResponse) => {
          const n = Number(req.url!.slice(1));
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          for (let i = 0; i < n; i++) res.write(`data: ${'x'.repeat(92)}\n\n`);
          await new Promise<void>((r) => gates.set(req.url!, r));
          res.end();
        },
        { registry, route },
      ),
    );
    const open = (n: number): Promise<void> =>
      new Promise((resolveP, reject) => {
        let got = 0;
        http
          .get(`${srv.url}/${n}`, { agent: false }, (res) => {
            res.on('data', (c: Buffer) => {
              got += c.length;
              if (got >= n * 100) resolveP();
            });
          })
          .on('error', reject);
      });
    const closed = async (count: number): Promise<void> => {
      await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route }) === count, `${count} stream(s) closed`);
    };
    await open(9); // before any MeterProvider: muted at open
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
    await open(4); // counted
    await until(() => gates.size === 2, 'both handlers waiting');

    const series: Array<Record<string, number>> = [];
    const snap = async (): Promise<Record<string, number>> => {
      const m = await collect();
      const v = Object.fromEntries(COUNTERS.map((c) => [c, total(m.get(c), route)]));
      series.push(v);
      return v;
    };
    const both = await snap();
    gates.get('/9')!(); // the early stream closes
    await closed(1);
    const afterEarly = await snap();
    gates.get('/4')!();
    await closed(2);
    const afterBoth = await snap();
    await srv.close();

    // monotonic: never down from one collection to the next
    for (const c of COUNTERS) for (let i = 1; i < series.length; i++) expect(series[i]![c], `${c} at collection ${i}`).toBeGreaterThanOrEqual(series[i - 1]![c]!);
    // the early stream is not counted at any time; the later one from its open to its close
    expect(both.stream_bytes_written_total).toBe(400);
    expect(afterEarly.stream_bytes_written_total).toBe(400);
    expect(afterBoth.stream_bytes_written_total).toBe(400);
    expect(afterBoth.stream_writes_total).toBe(4);
    const m = await collect();
    expect(total(m.get('stream_started_total'), route)).toBe(1);
    expect(total(m.get('stream_active_connections'), route)).toBe(0);
    // Prometheus counts both
    expect(sum(await scrape(registry), 'stream_bytes_written_total', { route })).toBe(1300);
  });
});
