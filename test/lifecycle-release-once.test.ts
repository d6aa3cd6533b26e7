import { afterAll, describe, expect, it } from 'vitest';
import dc from 'node:diagnostics_channel';
import { metrics } from '@opentelemetry/api';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { channelNames, instrument } from '../src/index.js';
import { getTracker } from '../src/core/tracker.js';
import { getAndAbort, scrape, sleep, sum, until } from './helpers/http.js';
import { testScope } from './helpers/scope.js';

/**
 * `release` is emitted once per stream (issue 20, item 9). A stream released at its close whose producer writes
 * on comes back to be watched, and is let go again: its consumers see no second `release`, the channel no second
 * close, and every write after close is counted once in both metric pipelines, none lost at the second let-go.
 */

const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
afterAll(() => metrics.disable());

async function otelTotal(name: string, route: string): Promise<number> {
  exporter.reset();
  await reader.forceFlush();
  let n = 0;
  for (const rm of exporter.getMetrics())
    for (const sm of rm.scopeMetrics)
      if (sm.scope.name === 'streamscope')
        for (const m of sm.metrics)
          if (m.descriptor.name === name) for (const p of m.dataPoints) if (p.attributes.route === route) n += p.value as number;
  return n;
}

const { cleanup, serve } = testScope();
const tracker = getTracker();
const DANGLE = 300;

describe('release, a write after close, release again', () => {
  it('one release event per stream, one close message, every write after close counted once', async () => {
    const route = '/release-once';
    const releases = new Map<number, number>();
    cleanup.push(tracker.subscribe({ component: 'test-release', release: (s) => void (s.route === route && releases.set(s.id, (releases.get(s.id) ?? 0) + 1)) }));
    const closes: unknown[] = [];
    const onClose = (m: unknown): void => void ((m as { route?: string }).route === route && closes.push(m));
    dc.subscribe(channelNames.close, onClose);
    cleanup.push(() => dc.unsubscribe(channelNames.close, onClose));
    let lateWrites = 0;
    const registry = new Registry();
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: hello\n\n');
          // a producer that learns late: two writes after close, each after the stream was let go
          res.on('close', () => {
            setTimeout(() => void (res.write('data: late\n\n'), lateWrites++), 100);
            setTimeout(() => void (res.write('data: later\n\n'), lateWrites++), 800);
          });
        },
        { registry, route, danglingAfterMs: DANGLE },
      ),
    );
    await getAndAbort(srv.url, 1);
    // released at close (the handler returned, nothing written yet), back after each write, let go again
    await until(() => lateWrites === 2, 'both late writes', 5_000);
    // the second write came 700 ms after the first: it holds the stream for twice that, then a sweep lets it go
    await sleep(1400 + 600);
    expect([...releases.values()]).toEqual([1]);
    expect([...tracker.lingering.values()].filter((s) => s.route === route)).toEqual([]);
    expect(closes).toHaveLength(1);
    // no scrape or collection ran while the stream lingered: both writes were carried at their own time
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_writes_after_close_total', { route })).toBe(2);
    expect(sum(samples, 'stream_active_connections', { route })).toBe(0);
    expect(sum(samples, 'stream_duration_seconds_count', { route })).toBe(sum(samples, 'stream_started_total', { route }));
    expect(await otelTotal('stream_writes_after_close_total', route)).toBe(2);
  }, 20_000);
});
