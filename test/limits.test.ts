import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHub, sse, StreamClosedError, type SseOptions, type SseStream } from '../src/index.js';
import { TokenBuckets } from '../src/runtime/limits/token-bucket.js';
import { MinuteWindow } from '../src/runtime/limits/window.js';
import { get, newRegistry, scrape, serverPool, sum, until } from './helpers/http.js';
import { hubApp, openSse } from './helpers/sse.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const serve = serverPool(afterEach);

describe('token bucket (pure logic)', () => {
  it('grants a burst, then one token per 1/perSecond, and says how long to wait', () => {
    let now = 0;
    const b = new TokenBuckets({ burst: 3, perSecond: 2 }, () => now);
    expect([b.take('a'), b.take('a'), b.take('a')]).toEqual([0, 0, 0]);
    expect(b.take('a')).toBe(1);
    expect(b.take('b')).toBe(0); // per client
    now += 500;
    expect(b.take('a')).toBe(0);
    expect(b.take('a')).toBeGreaterThan(0);
  });

  it('never grants more than burst + elapsed × rate, whatever the timing', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.double({ min: 0.1, max: 50, noNaN: true }),
        fc.array(fc.integer({ min: 0, max: 2000 }), { minLength: 1, maxLength: 200 }),
        (burst, perSecond, gaps) => {
          let now = 0;
          const b = new TokenBuckets({ burst, perSecond }, () => now);
          let granted = 0;
          for (const g of gaps) {
            now += g;
            if (b.take('k') === 0) granted++;
          }
          expect(granted).toBeLessThanOrEqual(burst + Math.floor((now / 1000) * perSecond) + 1);
        },
      ),
    );
  });

  it('remembers at most maxClients clients', () => {
    const b = new TokenBuckets({ burst: 1, perSecond: 1, maxClients: 100 }, () => 0);
    for (let i = 0; i < 1000; i++) b.take(`c${i}`);
    expect(b.size).toBe(100);
  });

  it('a minute window counts the last 60 seconds only', () => {
    const w = new MinuteWindow();
    const t0 = 1_000_000_000;
    w.add(1, t0);
    w.add(2, t0 + 30_000);
    expect(w.total(t0 + 30_000)).toBe(3);
    expect(w.total(t0 + 60_500)).toBe(2);
    expect(w.total(t0 + 200_000)).toBe(0);
  });
});

describe('rate limit and load shedding over HTTP', () => {
  it('per-client token bucket: 429 with Retry-After, counted as rate_limited, no stream opened', async () => {
    const registry = newRegistry();
    const opts: SseOptions = { registry, route: '/rl', heartbeatMs: 0, rateLimit: { burst: 2, perSecond: 0.01 } };
    const rejected: SseStream[] = [];
    const srv = await serve((req, res) => {
      const s = sse(req, res, opts);
      if (s.rejected) rejected.push(s);
    });
    const a = await openSse(srv.url);
    const b = await openSse(srv.url);
    const c = await get(srv.url);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(c.status).toBe(429);
    expect(Number(c.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(c.body.toString()).error).toEqual({ code: 'STREAMSCOPE_ERR_RATE_LIMITED', message: 'too many streams opened' });
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.rejected).toBe('rate_limited');
    expect(rejected[0]!.signal.aborted).toBe(true);
    await expect(rejected[0]!.send('x')).rejects.toBeInstanceOf(StreamClosedError);
    const m = await scrape(registry);
    expect(sum(m, 'stream_rejected_total', { route: '/rl', reason: 'rate_limited' })).toBe(1);
    expect(sum(m, 'stream_started_total', { route: '/rl' })).toBe(2);
    a.close();
    b.close();
  });

  it('maxStreams: 503 with Retry-After while full, admitted again once a stream closes', async () => {
    const registry = newRegistry();
    const opts: SseOptions = { registry, route: '/shed', heartbeatMs: 0, shed: { maxStreams: 2, retryAfterSeconds: 7 } };
    const srv = await serve((req, res) => {
      sse(req, res, opts);
    });
    const a = await openSse(srv.url);
    const b = await openSse(srv.url);
    const c = await get(srv.url);
    expect(c.status).toBe(503);
    expect(c.headers['retry-after']).toBe('7');
    expect(JSON.parse(c.body.toString()).error).toEqual({ code: 'STREAMSCOPE_ERR_OVERLOADED', message: 'server overloaded' });
    a.close();
    await until(async () => sum(await scrape(registry), 'stream_active_connections', { route: '/shed' }) === 1, 'one closed');
    const d = await openSse(srv.url);
    expect(d.status).toBe(200);
    const m = await scrape(registry);
    expect(sum(m, 'stream_rejected_total', { route: '/shed', reason: 'overloaded' })).toBe(1);
    b.close();
    d.close();
  });

  it('heap threshold: 503 while the heap is above maxHeapBytes', async () => {
    const registry = newRegistry();
    const opts: SseOptions = { registry, route: '/heap', heartbeatMs: 0, shed: { maxHeapBytes: 1 } };
    const srv = await serve((req, res) => {
      sse(req, res, opts);
    });
    const r = await get(srv.url);
    expect(r.status).toBe(503);
    expect(sum(await scrape(registry), 'stream_rejected_total', { route: '/heap', reason: 'overloaded' })).toBe(1);
  });

  it('the hub applies the same limits to subscribe()', async () => {
    const registry = newRegistry();
    const hub = createHub({ registry, route: '/events', heartbeatMs: 0, rateLimit: { burst: 1, perSecond: 0.01 } });
    cleanups.push(() => hub.close());
    const app = hubApp(hub);
    const srv = await serve(app.handler);
    const a = await openSse(`${srv.url}/events`);
    const b = await get(`${srv.url}/events`);
    expect(a.status).toBe(200);
    expect(b.status).toBe(429);
    expect(sum(await scrape(registry), 'stream_rejected_total', { route: '/events', reason: 'rate_limited' })).toBe(1);
    a.close();
  });
});
