import { describe, expect, it } from 'vitest';
import net from 'node:net';
import type http from 'node:http';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { getTracker } from '../src/core/tracker.js';
import { StreamList } from '../src/core/stream-list.js';
import { sweepStats } from '../src/consumers/detectors/index.js';
import { neverReadingClient, pumpUntilClosed, scrape, sleep, sum, until } from './helpers/http.js';
import { testScope } from './helpers/scope.js';

// The sweep's work follows the streams that can have something to do (blocked, written to since the last sweep,
// watched on the wire, lingering), not every open stream: 2,000 idle open SSE streams cost it nothing, while the
// blocked ones are still found stalled, an idle one that blocks later too, and the idle ones raise nothing.
const IDLE = 2000;
const STALL = 300;
const { cleanup, serve, collect } = testScope();

/** A client that reads everything it is sent (an idle SSE subscriber). */
function readingClient(port: number, path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' }, () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      resolve(sock);
    });
    sock.on('data', () => undefined);
    sock.on('error', reject);
  });
}

describe('the sweep visits what can have something to do', () => {
  it(`${IDLE} idle open streams and 3 blocked: a sweep visits a handful of streams, finds the blocked ones (and an idle one that blocks later) stalled, and nothing on the idle ones`, async () => {
    const tracker = getTracker();
    const registry = new Registry();
    const idleFindings = collect('/idle');
    const blockedFindings = collect('/blocked');
    let late: http.ServerResponse | null = null;
    const idle = instrument(
      (req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write(': open\n\n');
        if (req.url === '/idle?late=1') late = res;
        return new Promise<void>((r) => res.on('close', () => r()));
      },
      { registry, route: '/idle', stallAfterMs: STALL, danglingAfterMs: 60_000 },
    );
    const blocked = instrument(
      (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
        return pumpUntilClosed(res);
      },
      { registry, route: '/blocked', stallAfterMs: STALL, danglingAfterMs: 60_000 },
    );
    const srv = await serve((req, res) => (req.url?.startsWith('/idle') ? idle(req, res) : blocked(req, res)));
    const socks: net.Socket[] = [];
    cleanup.push(() => socks.forEach((s) => s.destroy()));
    for (let i = 0; i < IDLE; i += 200) {
      const batch = await Promise.all(Array.from({ length: Math.min(200, IDLE - i) }, () => readingClient(srv.port, '/idle')));
      socks.push(...batch);
    }
    // the idle stream that will block later: its client never reads (one event fits its buffers)
    socks.push(await neverReadingClient(srv.port, '/idle?late=1'));
    for (let i = 0; i < 3; i++) socks.push(await neverReadingClient(srv.port, '/blocked'));
    await until(() => tracker.open.size >= IDLE + 4 && late !== null, 'every stream open', 30_000);

    // what each sweep visits: every call of a stream list's walk while the tracker sweeps, and the streams the
    // detectors looked at outside those walks (the written-to list)
    const proto = StreamList.prototype as unknown as { each(fn: (s: unknown) => void): void };
    const each = proto.each;
    let inSweep = false;
    let walked = 0;
    proto.each = function (this: StreamList, fn: (s: unknown) => void): void {
      each.call(this, inSweep ? (s: unknown) => (walked++, fn(s)) : fn);
    };
    cleanup.push(() => (proto.each = each));
    const sweep = tracker.sweep;
    const perSweep: number[] = [];
    tracker.sweep = function (this: typeof tracker): void {
      inSweep = true;
      walked = 0;
      try {
        sweep.call(this);
      } finally {
        inSweep = false;
        perSweep.push(walked + ((sweepStats as { written?: number } | undefined)?.written ?? 0));
      }
    };
    cleanup.push(() => (tracker.sweep = sweep));

    // the blocked streams are found stalled, and the gauges see them
    await until(() => blockedFindings.filter((f) => f.kind === 'stalled_write').length === 3, '3 stalled_write on /blocked', 15_000);
    await until(async () => sum(await scrape(registry), 'stream_stalled', { route: '/blocked' }) === 3, 'stream_stalled 3 on /blocked');
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_buffered_bytes', { route: '/blocked' })).toBeGreaterThan(0);
    // a few sweeps once the idle streams' first bytes are out: each visits a handful of streams, not the open ones
    perSweep.length = 0;
    await until(() => perSweep.length >= 6, 'six sweeps', 10_000);
    expect(tracker.open.size).toBeGreaterThanOrEqual(IDLE + 4);
    const most = Math.max(...perSweep.slice(2));
    expect(most, `streams visited per sweep with ${tracker.open.size} open, 4 of them blocked: ${perSweep.join(', ')}`).toBeLessThanOrEqual(20);

    // healthy idle streams: nothing raised, nothing stalled or queued
    expect(idleFindings).toEqual([]);
    expect(sum(samples, 'stream_stalled', { route: '/idle' })).toBe(0);

    // the idle stream that now pumps into a client that never reads: found stalled like any other
    await sleep(300);
    const lateRes = late as unknown as http.ServerResponse;
    void pumpUntilClosed(lateRes);
    await until(() => idleFindings.length > 0, 'a stalled_write on the idle stream that blocked', 15_000);
    expect(idleFindings.map((f) => f.kind)).toEqual(['stalled_write']);
    await until(async () => sum(await scrape(registry), 'stream_stalled', { route: '/idle' }) === 1, 'stream_stalled 1 on /idle');
    await sleep(600);
    // still only that one: the 2,000 others raised nothing
    expect(idleFindings).toHaveLength(1);
    // the blocked list lets go of its streams when they close (a close ends the blocked episode)
    expect(tracker.blocked.size).toBeGreaterThanOrEqual(4);
    for (const s of socks) s.destroy();
    await until(() => tracker.open.size === 0, 'every stream closed', 20_000);
    expect(tracker.blocked.size).toBe(0);
  }, 90_000);
});
