import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { createHub, rateLimiter, sse, type SseOptions } from '../src/index.js';
import { get, newRegistry, scrape, serverPool, sum, until } from './helpers/http.js';
import { openSse, type RawSse } from './helpers/sse.js';

// Limits are keyed by route (or an explicit limiter object), never by the identity of an options object:
// `sse(req, res, { rateLimit })` written inline, a new object per request, limits as one declared once.

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});
const serve = serverPool(afterEach);

/** Opens `n` streams one after another; returns the statuses and keeps the open ones for cleanup. */
async function open(url: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const s: RawSse = await openSse(url);
    out.push(s.status);
    cleanups.push(() => s.close());
  }
  return out;
}

describe('rate limits keyed by route, not by options object', () => {
  it('inline rateLimit (a new options object per request) rejects past the burst: 429, stream_rejected_total{reason="rate_limited"}', async () => {
    const registry = newRegistry();
    const srv = await serve((req, res) => {
      sse(req, res, { registry, route: '/inline', heartbeatMs: 0, rateLimit: { burst: 2, perSecond: 0.01 } });
    });
    expect(await open(`${srv.url}/inline`, 5)).toEqual([200, 200, 429, 429, 429]);
    const m = await scrape(registry);
    expect(sum(m, 'stream_rejected_total', { route: '/inline', reason: 'rate_limited' })).toBe(3);
    expect(sum(m, 'stream_started_total', { route: '/inline' })).toBe(2);
  });

  it('without a route option the buckets are per route label: one route at its limit does not limit another', async () => {
    const registry = newRegistry();
    const srv = await serve((req, res) => {
      sse(req, res, { registry, heartbeatMs: 0, rateLimit: { burst: 2, perSecond: 0.01 } });
    });
    expect(await open(`${srv.url}/a`, 3)).toEqual([200, 200, 429]);
    expect(await open(`${srv.url}/b`, 2)).toEqual([200, 200]);
    const m = await scrape(registry);
    expect(sum(m, 'stream_rejected_total', { route: '/a', reason: 'rate_limited' })).toBe(1);
    expect(sum(m, 'stream_rejected_total', { route: '/b', reason: 'rate_limited' })).toBe(0);
  });

  it('an explicit limiter object (rateLimiter()) is shared by every route it is given to', async () => {
    const registry = newRegistry();
    const limiter = rateLimiter({ burst: 3, perSecond: 0.01 });
    const srv = await serve((req, res) => {
      sse(req, res, { registry, route: req.url === '/x' ? '/x' : '/y', heartbeatMs: 0, rateLimit: limiter });
    });
    expect([...(await open(`${srv.url}/x`, 2)), ...(await open(`${srv.url}/y`, 2))]).toEqual([200, 200, 200, 429]);
    const m = await scrape(registry);
    expect(sum(m, 'stream_rejected_total', { route: '/y', reason: 'rate_limited' })).toBe(1);
  });

  it('inline shed.maxStreams counts the streams open on the route: 503 while full, admitted once one closes', async () => {
    const registry = newRegistry();
    const srv = await serve((req, res) => {
      sse(req, res, { registry, route: '/shed-inline', heartbeatMs: 0, shed: { maxStreams: 2 } });
    });
    const a = await openSse(`${srv.url}/shed-inline`);
    const b = await openSse(`${srv.url}/shed-inline`);
    const c = await get(`${srv.url}/shed-inline`);
    expect([a.status, b.status, c.status]).toEqual([200, 200, 503]);
    a.close();
    await until(async () => sum(await scrape(registry), 'stream_active_connections', { route: '/shed-inline' }) === 1, 'one closed');
    const d = await openSse(`${srv.url}/shed-inline`);
    expect(d.status).toBe(200);
    b.close();
    d.close();
    const m = await scrape(registry);
    expect(sum(m, 'stream_rejected_total', { route: '/shed-inline', reason: 'overloaded' })).toBe(1);
  });

  it('hub.subscribe() with inline per-call rateLimit options limits too', async () => {
    const registry = newRegistry();
    const hub = createHub({ registry, route: '/hub-inline', heartbeatMs: 0 });
    cleanups.push(() => hub.close());
    const srv = await serve((req: http.IncomingMessage, res: http.ServerResponse) => {
      void hub.subscribe(req, res, 'c', { rateLimit: { burst: 1, perSecond: 0.01 } } as SseOptions);
    });
    expect(await open(`${srv.url}/hub-inline`, 3)).toEqual([200, 429, 429]);
    const m = await scrape(registry);
    expect(sum(m, 'stream_rejected_total', { route: '/hub-inline', reason: 'rate_limited' })).toBe(2);
  });
});
