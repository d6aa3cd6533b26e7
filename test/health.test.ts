import { afterEach, describe, expect, it } from 'vitest';
import { healthHandler, sse, type SseOptions } from '../src/index.js';
import { get, neverReadingClient, serverPool, until } from './helpers/http.js';
import { openSse } from './helpers/sse.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const serve = serverPool(afterEach);

type Report = {
  status: string;
  streams?: {
    active: number;
    stalled: number;
    dangling: number;
    lastMinute: { closed: number; clientAborted: number; clientAbortRate: number; rejected: { rate_limited: number; overloaded: number } };
  };
};

async function probe(url: string): Promise<{ status: number; body: Report }> {
  const r = await get(`${url}/healthz?probe=stream`);
  return { status: r.status, body: JSON.parse(r.body.toString()) as Report };
}

describe('healthHandler()', () => {
  it('answers /healthz?probe=stream with active streams, rejections and the client-abort rate', async () => {
    // one route for /live and /short: rate limits are per route (docs/sse.md), and this budget of 3 is shared
    const opts: SseOptions = { route: '/live', heartbeatMs: 0, rateLimit: { burst: 3, perSecond: 0.01 } };
    const health = healthHandler({ minStreamsForRate: 3 });
    const srv = await serve((req, res) => {
      if (req.url?.startsWith('/healthz')) return health(req, res);
      const s = sse(req, res, opts);
      if (req.url === '/short') void s.send('bye').then(() => s.close());
    });
    const plain = await get(`${srv.url}/healthz`);
    expect(JSON.parse(plain.body.toString())).toEqual({ status: 'ok' });
    const a = await openSse(`${srv.url}/live`);
    const b = await openSse(`${srv.url}/live`);
    const short = await openSse(`${srv.url}/short`);
    await short.ended;
    const limited = await get(`${srv.url}/live`);
    expect(limited.status).toBe(429);
    const p1 = await probe(srv.url);
    expect(p1.status).toBe(200);
    expect(p1.body.streams!.active).toBe(2);
    expect(p1.body.streams!.lastMinute.rejected.rate_limited).toBe(1);
    expect(p1.body.streams!.lastMinute.closed).toBe(1);
    expect(p1.body.streams!.lastMinute.clientAbortRate).toBe(0);
    a.close();
    b.close();
    const p2 = await until(async () => {
      const p = await probe(srv.url);
      return p.body.streams!.active === 0 ? p : null;
    }, 'streams closed');
    expect(p2!.body.streams!.lastMinute.clientAborted).toBe(2);
    expect(p2!.body.streams!.lastMinute.clientAbortRate).toBeCloseTo(2 / 3, 2);
    expect(p2!.body.status).toBe('degraded'); // more than half the streams were cut by their clients
  });

  it('is overloaded (503) above the shed thresholds, and counts a stalled stream', async () => {
    const health = healthHandler({ shed: { maxStreams: 1 } });
    const big = 'x'.repeat(64 * 1024);
    const srv = await serve(async (req, res) => {
      if (req.url?.startsWith('/healthz')) return health(req, res);
      const s = sse(req, res, { heartbeatMs: 0, stallAfterMs: 50, drainTimeoutMs: 60_000 });
      try {
        for (;;) await s.send(big);
      } catch {
        /* closed */
      }
    });
    const sock = await neverReadingClient(srv.port, '/stuck');
    sock.on('error', () => {});
    cleanups.push(() => {
      sock.destroy();
    });
    const p = await until(async () => {
      const r = await probe(srv.url);
      return r.body.streams!.stalled === 1 ? r : null;
    }, 'a stalled stream', 20_000);
    expect(p!.status).toBe(503);
    expect(p!.body.status).toBe('overloaded');
    expect(p!.body.streams!.active).toBe(1);
  });
});
