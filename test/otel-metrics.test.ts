import { afterAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type HistogramMetricData,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { DURATION_BUCKETS } from '../src/consumers/metrics.js';
import { get, scrape, startServer, sum, until } from './helpers/http.js';

/** The real SDK: a MeterProvider registered globally, an in-memory exporter, a manual flush. */
const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });

afterAll(async () => {
  metrics.disable();
});

async function collect(): Promise<Map<string, MetricData>> {
  exporter.reset();
  await reader.forceFlush();
  const out = new Map<string, MetricData>();
  for (const rm of exporter.getMetrics()) for (const sm of rm.scopeMetrics) if (sm.scope.name === 'streamscope') for (const m of sm.metrics) out.set(m.descriptor.name, m);
  return out;
}

const total = (m: MetricData | undefined, match: Record<string, string> = {}): number =>
  (m?.dataPoints ?? [])
    .filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))
    .reduce((a, p) => a + (typeof p.value === 'number' ? p.value : (p.value as { count: number }).count), 0);

const sse = (n: number): http.RequestListener => async (_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  for (let i = 0; i < n; i++) {
    res.write(`data: ${i}\n\n`);
    await new Promise((r) => setTimeout(r, 2));
  }
  res.end();
};

describe('OpenTelemetry metrics', () => {
  it('without a MeterProvider, nothing is recorded (streams before the provider are not counted)', async () => {
    const registry = new Registry();
    const srv = await startServer(instrument(sse(2), { registry, route: '/before' }));
    await get(srv.url);
    await srv.close();
    // registered only now: the stream above is in Prometheus, not in OTel
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
    expect(sum(await scrape(registry), 'stream_started_total', { route: '/before' })).toBe(1);
    expect(total((await collect()).get('stream_started_total'), { route: '/before' })).toBe(0);
  });

  it('with a MeterProvider, the contract metrics are OTel instruments whose counts match what the client saw', async () => {
    const registry = new Registry();
    const srv = await startServer(instrument(sse(4), { registry, route: '/otel' }));
    const N = 5;
    let bytes = 0;
    for (let i = 0; i < N; i++) bytes += (await get(srv.url)).body.length;
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route: '/otel' }) === N, 'streams to close');
    await srv.close();
    const m = await collect();
    expect(total(m.get('stream_started_total'), { route: '/otel', method: 'GET' })).toBe(N);
    expect(total(m.get('stream_active_connections'), { route: '/otel' })).toBe(0);
    expect(total(m.get('stream_bytes_written_total'), { route: '/otel' })).toBe(bytes);
    expect(total(m.get('stream_writes_total'), { route: '/otel' })).toBe(N * 4);
    expect(total(m.get('write_blocked_total'), { route: '/otel' })).toBe(0);
    const duration = m.get('stream_duration_seconds') as HistogramMetricData;
    expect(duration.dataPointType).toBe(DataPointType.HISTOGRAM);
    expect(duration.descriptor.unit).toBe('s');
    expect(total(duration, { route: '/otel', outcome: 'completed' })).toBe(N);
    expect(duration.dataPoints[0]!.value.buckets.boundaries).toEqual(DURATION_BUCKETS);
    expect(total(m.get('stream_first_write_seconds'), { route: '/otel' })).toBe(N);
    // the same numbers as the Prometheus side
    const prom = await scrape(registry);
    expect(sum(prom, 'stream_bytes_written_total', { route: '/otel' })).toBe(bytes);
    expect(sum(prom, 'stream_started_total', { route: '/otel' })).toBe(N);
  });

  it('shows the bytes of a stream that is still open', async () => {
    const registry = new Registry();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const srv = await startServer(
      instrument(async (_req: http.IncomingMessage, res: http.ServerResponse) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: 1234\n\n');
        await gate;
        res.end();
      }, { registry, route: '/open' }),
    );
    const got = new Promise<void>((resolve) => http.get(srv.url, (res) => res.once('data', () => resolve()).resume()));
    await got;
    const m = await collect();
    expect(total(m.get('stream_active_connections'), { route: '/open' })).toBe(1);
    expect(total(m.get('stream_bytes_written_total'), { route: '/open' })).toBe('data: 1234\n\n'.length);
    release();
    await srv.close();
  });
  it('counts writes that arrive after the stream closed (the producer wrote on), like Prometheus', async () => {
    const registry = new Registry();
    const AFTER = 5;
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const srv = await startServer(
      instrument(async (req: http.IncomingMessage, res: http.ServerResponse) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: first\n\n');
        await new Promise((r) => req.once('close', r));
        // well after the close: the response is gone, the producer writes on
        await new Promise((r) => setTimeout(r, 50));
        for (let i = 0; i < AFTER; i++) {
          res.write(`data: late ${i}\n\n`);
          await new Promise((r) => setTimeout(r, 5));
        }
        done();
      }, { registry, route: '/late' }),
    );
    await new Promise<void>((resolve) => {
      const req = http.get(srv.url, (res) => res.once('data', () => (req.destroy(), resolve())));
    });
    await finished;
    await until(async () => sum(await scrape(registry), 'stream_writes_after_close_total', { route: '/late' }) === AFTER, 'writes after close in Prometheus');
    const m = await collect();
    expect(total(m.get('stream_writes_after_close_total'), { route: '/late' })).toBe(AFTER);
    expect(total(m.get('stream_duration_seconds'), { route: '/late', outcome: 'client_aborted' })).toBe(1);
    expect(total(m.get('stream_writes_total'), { route: '/late' })).toBe(1);
    await srv.close();
  });
});
