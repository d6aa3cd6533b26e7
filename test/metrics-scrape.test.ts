import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { Registry } from 'prom-client';
import { instrument, streams } from '../src/index.js';
import { getTracker } from '../src/core/tracker.js';
import type { StreamList } from '../src/core/stream-list.js';
import { scrape, serverPool, sum, until } from './helpers/http.js';

/**
 * A scrape publishes per-route figures that the write path and the sweep keep (docs/metrics.md#cost): it never
 * walks the open streams, and still counts every byte a stream that is open wrote, up to the scrape itself.
 */

const serve = serverPool(afterEach);
const tracker = getTracker();

/** A handler that writes `first` synchronously (its first writes come before the stream opens), then hands its response out. */
function held(first: string[], out: http.ServerResponse[], gates: Array<() => void>): http.RequestListener {
  return async (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    for (const c of first) res.write(c);
    out.push(res);
    await new Promise<void>((r) => gates.push(r));
    res.end();
  };
}

/** A client that reads whatever the stream sends; resolves once its first bytes are in. */
function reader(url: string, cleanup: Array<() => void>): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.once('data', () => resolve());
      res.resume();
    });
    req.on('error', reject);
    cleanup.push(() => req.destroy());
  });
}

const cleanup: Array<() => void> = [];
afterEach(() => {
  while (cleanup.length) cleanup.pop()!();
});

describe('a scrape of open streams', () => {
  it("counts every byte and write of a stream still open, written up to the scrape (no sweep between), and every write after close", async () => {
    const registry = new Registry();
    const route = '/open-count';
    const out: http.ServerResponse[] = [];
    const gates: Array<() => void> = [];
    // three writes in the tick of the first: counted while the stream is still pending, moved at its open
    const first = ['data: a\n\n', 'data: bb\n\n', 'data: ccc\n\n'];
    const srv = await serve(instrument(held(first, out, gates), { registry, route }));
    await reader(srv.url, cleanup);
    await until(() => streams().some((s) => s.route === route), 'the stream open');
    const res = out[0]!;
    let bytes = first.join('').length;
    let writes = first.length;
    let samples = await scrape(registry);
    expect(sum(samples, 'stream_bytes_written_total', { route })).toBe(bytes);
    expect(sum(samples, 'stream_writes_total', { route })).toBe(writes);
    for (let round = 1; round <= 6; round++) {
      // written and scraped in one synchronous run: no sweep (a timer) can come between them
      for (let i = 0; i < round; i++) {
        const c = Buffer.alloc(100 * round + i, 'x');
        res.write(c);
        bytes += c.length;
        writes++;
      }
      const text = registry.metrics(); // collect() runs now, in this tick
      samples = await scrape({ metrics: () => text } as unknown as Registry);
      expect(sum(samples, 'stream_bytes_written_total', { route }), `round ${round}`).toBe(bytes);
      expect(sum(samples, 'stream_writes_total', { route }), `round ${round}`).toBe(writes);
      expect(sum(samples, 'stream_active_connections', { route })).toBe(1);
      await new Promise((r) => setTimeout(r, 30 * round)); // sweeps or not between rounds: the figures stay exact
    }
    // the client goes away; the producer writes on: each write after close is counted at once
    cleanup.pop()!();
    await until(async () => sum(await scrape(registry), 'stream_active_connections', { route }) === 0, 'the stream closed');
    for (let i = 1; i <= 4; i++) {
      res.write('data: late\n\n');
      const text = registry.metrics();
      samples = await scrape({ metrics: () => text } as unknown as Registry);
      expect(sum(samples, 'stream_writes_after_close_total', { route })).toBe(i);
    }
    expect(sum(samples, 'stream_bytes_written_total', { route })).toBe(bytes);
    gates.forEach((g) => g());
  });

  it('walks no stream: the open and lingering lists are not read during a scrape', async () => {
    const registry = new Registry();
    const route = '/no-walk';
    const out: http.ServerResponse[] = [];
    const gates: Array<() => void> = [];
    const srv = await serve(instrument(held(['data: x\n\n'], out, gates), { registry, route }));
    const N = 20;
    await Promise.all(Array.from({ length: N }, () => reader(srv.url, cleanup)));
    await until(() => streams().filter((s) => s.route === route).length === N, `${N} streams open`);
    for (const r of out) r.write('data: more\n\n');
    // the sweep folds the gauges: wait for one after the writes
    await new Promise((r) => setTimeout(r, 600));
    const lists: StreamList[] = [tracker.open, tracker.lingering];
    let reads = 0;
    const restore = lists.map((l) => {
      const each = l.each;
      const values = l.values;
      l.each = function (this: StreamList, fn) {
        reads++;
        return each.call(this, fn);
      };
      l.values = function (this: StreamList) {
        reads++;
        return values.call(this);
      };
      return () => {
        delete (l as Partial<StreamList>).each;
        delete (l as Partial<StreamList>).values;
      };
    });
    let samples;
    try {
      samples = await scrape(registry);
    } finally {
      restore.forEach((r) => r());
    }
    expect(reads).toBe(0);
    expect(sum(samples, 'stream_active_connections', { route })).toBe(N);
    expect(sum(samples, 'stream_writes_total', { route })).toBe(2 * N);
    expect(sum(samples, 'stream_bytes_written_total', { route })).toBe(N * ('data: x\n\n'.length + 'data: more\n\n'.length));
    expect(sum(samples, 'stream_buffered_bytes', { route })).toBe(0);
    expect(sum(samples, 'stream_stalled', { route })).toBe(0);
    gates.forEach((g) => g());
  });
});
