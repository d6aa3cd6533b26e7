import { afterAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { metrics, type Meter, type MeterProvider as ApiMeterProvider } from '@opentelemetry/api';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type MetricData } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { get, startServer } from './helpers/http.js';

/**
 * The SDK hashes the attributes on every instrument call, which is what the OpenTelemetry metrics cost a short
 * stream (docs/metrics.md#opentelemetry-metrics): streams started and open are per-route numbers observed at
 * collection, so a stream makes two SDK calls (its first-write and duration histograms), and the figures are
 * the same. The real SDK, with each synchronous instrument's calls counted on the way to it. Its own file: the
 * instruments are made once per process, from the first provider.
 */

const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
const sdk = new MeterProvider({ readers: [reader] });
const calls = new Map<string, number>();

/** A meter whose synchronous instruments count their calls (by instrument name) and forward them. */
function counting(meter: Meter): Meter {
  const wrap = <T extends object>(name: string, inst: T, method: 'add' | 'record'): T =>
    new Proxy(inst, {
      get(target, key, recv) {
        const v = Reflect.get(target, key, recv) as unknown;
        if (key !== method || typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          calls.set(name, (calls.get(name) ?? 0) + 1);
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  return new Proxy(meter, {
    get(target, key, recv) {
      const v = Reflect.get(target, key, recv) as unknown;
      if (typeof v !== 'function') return v;
      if (key === 'createCounter' || key === 'createUpDownCounter') return (name: string, o?: object) => wrap(name, (v as (n: string, o?: object) => object).call(target, name, o), 'add');
      if (key === 'createHistogram') return (name: string, o?: object) => wrap(name, (v as (n: string, o?: object) => object).call(target, name, o), 'record');
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

const provider: ApiMeterProvider = { getMeter: (name, version, options) => counting(sdk.getMeter(name, version, options)) };
metrics.setGlobalMeterProvider(provider);
afterAll(() => metrics.disable());

async function collect(): Promise<Map<string, MetricData>> {
  exporter.reset();
  await reader.forceFlush();
  const out = new Map<string, MetricData>();
  for (const rm of exporter.getMetrics()) for (const sm of rm.scopeMetrics) if (sm.scope.name === 'streamscope') for (const m of sm.metrics) out.set(m.descriptor.name, m);
  return out;
}

const total = (m: MetricData | undefined, match: Record<string, string>): number =>
  (m?.dataPoints ?? []).filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v)).reduce((a, p) => a + (p.value as number), 0);

describe('OpenTelemetry metrics per stream', () => {
  it('two SDK calls per stream (first write, duration); streams started and open still counted exactly', async () => {
    const route = '/calls';
    const held: Array<() => void> = [];
    const srv = await startServer(
      instrument(
        async (req: http.IncomingMessage, res: http.ServerResponse) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: 1\n\n');
          if (req.url === '/hold') await new Promise<void>((r) => held.push(r));
          res.end('data: 2\n\n');
        },
        { registry: new Registry(), route },
      ),
    );
    const N = 12;
    for (let i = 0; i < N; i++) await get(srv.url);
    // one stream held open: counted as open, and as started
    const pending = get(`${srv.url}/hold`);
    while (held.length === 0) await new Promise((r) => setTimeout(r, 10));
    let m = await collect();
    expect(total(m.get('stream_started_total'), { route, method: 'GET' })).toBe(N + 1);
    expect(total(m.get('stream_active_connections'), { route })).toBe(1);
    held[0]!();
    await pending;
    m = await collect();
    expect(total(m.get('stream_started_total'), { route, method: 'GET' })).toBe(N + 1);
    expect(total(m.get('stream_active_connections'), { route })).toBe(0);
    expect(total(m.get('stream_bytes_written_total'), { route })).toBe((N + 1) * 18);
    // the SDK calls the streams made: a first-write and a duration histogram each, nothing else
    await srv.close();
    expect(Object.fromEntries(calls)).toEqual({ stream_first_write_seconds: N + 1, stream_duration_seconds: N + 1 });
  });
});
