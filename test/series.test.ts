import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { Registry } from 'prom-client';
import { createHub, instrument, sse } from '../src/index.js';
import { get, parseExposition, scrape, serverPool, sum, until, type Sample } from './helpers/http.js';
import { openSse } from './helpers/sse.js';

const serve = serverPool(afterEach);
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const ofRoute = (samples: Sample[], name: string, route: string): Sample[] => samples.filter((s) => s.name === name && s.labels.route === route);

/** The series of one route, per metric of docs/metrics.md ("Series per route"). */
const PER_ROUTE: Record<string, number> = {
  stream_active_connections: 1,
  stream_buffered_bytes: 1,
  stream_stalled: 1,
  write_blocked_total: 1,
  stream_bytes_written_total: 1,
  stream_writes_total: 1,
  stream_writes_after_close_total: 1,
  stream_leaks_total: 5,
  stream_first_write_seconds_bucket: 13,
  stream_first_write_seconds_sum: 1,
  stream_first_write_seconds_count: 1,
  stream_first_byte_seconds_bucket: 13,
  stream_first_byte_seconds_sum: 1,
  stream_first_byte_seconds_count: 1,
  stream_longest_write_gap_seconds_bucket: 14,
  stream_longest_write_gap_seconds_sum: 1,
  stream_longest_write_gap_seconds_count: 1,
  stream_write_blocked_seconds_bucket: 13,
  stream_write_blocked_seconds_sum: 1,
  stream_write_blocked_seconds_count: 1,
  // per method
  stream_started_total: 1,
  // per method and outcome seen
  stream_duration_seconds_bucket: 18,
  stream_duration_seconds_sum: 1,
  stream_duration_seconds_count: 1,
};

describe('series that pay their way', () => {
  it('a plain instrumented route exports no resume or rejection series, and the documented series per route', async () => {
    const registry = new Registry();
    const srv = await serve(
      instrument(
        async (_req: http.IncomingMessage, res: http.ServerResponse) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: 1\n\n');
          await new Promise((r) => setTimeout(r, 2));
          res.end();
        },
        { registry, route: '/plain' },
      ),
    );
    await get(srv.url);
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route: '/plain' }) === 1, 'the stream to close');
    const text = await registry.metrics();
    const samples = parseExposition(text).samples;
    expect(samples.filter((s) => s.name === 'stream_resumes_total')).toEqual([]);
    expect(samples.filter((s) => s.name === 'stream_rejected_total')).toEqual([]);
    // (the metrics stay registered: their HELP and TYPE lines are there, with no sample)
    expect(text).toContain('# TYPE stream_resumes_total counter');
    const counts: Record<string, number> = {};
    for (const s of samples) if (s.labels.route === '/plain' && s.name in PER_ROUTE) counts[s.name] = (counts[s.name] ?? 0) + 1;
    expect(counts).toEqual(PER_ROUTE);
    expect(Object.values(PER_ROUTE).reduce((a, b) => a + b, 0)).toBe(94);
  });

  it('a hub route shows its resume results at 0 from its first subscriber, and counts a resume', async () => {
    const registry = new Registry();
    const hub = createHub({ registry, route: '/events', heartbeatMs: 0 });
    cleanups.push(() => hub.close());
    const srv = await serve((req, res) => void hub.subscribe(req, res, 'c'));
    const first = await openSse(srv.url);
    const results = async (): Promise<Record<string, number>> =>
      Object.fromEntries(ofRoute(await scrape(registry), 'stream_resumes_total', '/events').map((s) => [s.labels.result, s.value]));
    await until(async () => Object.keys(await results()).length === 3, 'the resume series of the hub route');
    expect(await results()).toEqual({ replayed: 0, expired: 0, invalid: 0 });
    const id = await hub.publish('c', 'x');
    await until(() => first.events.length === 1, 'the live event');
    first.close();
    const again = await openSse(srv.url, { 'Last-Event-ID': id });
    again.close();
    await until(async () => (await results()).replayed === 1, 'the resume to be counted');
    expect(await results()).toEqual({ replayed: 1, expired: 0, invalid: 0 });
    // no limits on this route: no rejection series
    expect(ofRoute(await scrape(registry), 'stream_rejected_total', '/events')).toEqual([]);
  });

  it('a route with a rate limit shows rate_limited at 0 from its first stream (not overloaded), then counts a refusal', async () => {
    const registry = new Registry();
    const options = { registry, route: '/limited', heartbeatMs: 0, rateLimit: { burst: 1, perSecond: 0.001 } };
    const srv = await serve((req, res) => {
      const s = sse(req, res, options);
      if (s.rejected === null) void s.send({ data: 'hi' }).then(() => s.close());
    });
    const ok = await get(srv.url);
    expect(ok.status).toBe(200);
    const reasons = async (): Promise<Record<string, number>> =>
      Object.fromEntries(ofRoute(await scrape(registry), 'stream_rejected_total', '/limited').map((s) => [s.labels.reason, s.value]));
    expect(await reasons()).toEqual({ rate_limited: 0 });
    const refused = await get(srv.url);
    expect(refused.status).toBe(429);
    expect(await reasons()).toEqual({ rate_limited: 1 });
    expect(ofRoute(await scrape(registry), 'stream_resumes_total', '/limited')).toEqual([]);
  });
});
