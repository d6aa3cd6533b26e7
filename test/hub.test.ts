import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { EventSource } from 'eventsource';
import fc from 'fast-check';
import { compareIds, createHub, memoryStore, type Hub, type HubStore, type SubscribeOptions } from '../src/index.js';
import { get, newRegistry, scrape, startServer, sum, until, type TestServer } from './helpers/http.js';
import { expectAnchoredResume, hubApp, openSse, publishWithCuts } from './helpers/sse.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function serveHub(hub: Hub, options?: SubscribeOptions) {
  const app = hubApp(hub, options);
  const srv: TestServer = await startServer(app.handler);
  cleanups.push(() => srv.close(), () => hub.close());
  return { app, srv };
}

describe('createHub() with memoryStore', () => {
  it('ids are <epoch>:<ms>-<seq>, one epoch per store, and strictly increasing per channel', async () => {
    const hub = createHub({ store: memoryStore() });
    cleanups.push(() => hub.close());
    const ids: string[] = [];
    for (let i = 0; i < 2000; i++) ids.push(await hub.publish(i % 2 ? 'a' : 'b', { data: i }));
    for (const ch of [0, 1]) {
      const mine = ids.filter((_, i) => i % 2 === ch);
      for (let i = 1; i < mine.length; i++) expect(compareIds(mine[i]!, mine[i - 1]!)).toBeGreaterThan(0);
    }
    expect(ids.every((id) => /^[0-9a-f]{12}:\d+-\d+$/.test(id))).toBe(true);
    expect(new Set(ids.map((id) => id.split(':')[0])).size).toBe(1);
  });

  it('replays after Last-Event-ID (header or query), then follows live events, each once and in order', async () => {
    const registry = newRegistry();
    const hub = createHub({ registry, route: '/events', heartbeatMs: 0 });
    const { srv } = await serveHub(hub);
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push(await hub.publish('c', { event: 'msg', data: { i } }));
    const byHeader = await openSse(`${srv.url}/events`, { 'Last-Event-ID': ids[9]! });
    const byQuery = await openSse(`${srv.url}/events?lastEventId=${encodeURIComponent(ids[29]!)}`);
    await until(() => byHeader.events.length === 40 && byQuery.events.length === 20, 'replays');
    for (let i = 50; i < 80; i++) ids.push(await hub.publish('c', { event: 'msg', data: { i } }));
    await until(() => byHeader.events.length === 70 && byQuery.events.length === 50, 'live events');
    expect(byHeader.events.map((e) => e.id)).toEqual(ids.slice(10));
    expect(byQuery.events.map((e) => e.id)).toEqual(ids.slice(30));
    expect(byHeader.events.every((e) => e.event === 'msg')).toBe(true);
    expect(byHeader.events.map((e) => (JSON.parse(e.data) as { i: number }).i)).toEqual(Array.from({ length: 70 }, (_, k) => k + 10));
    byHeader.close();
    byQuery.close();
    const m = await scrape(registry);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'replayed' })).toBe(2);
  });

  it('a subscriber without Last-Event-ID gets live events only; 0-0 replays all that is retained', async () => {
    const hub = createHub({ heartbeatMs: 0 });
    const { srv, app } = await serveHub(hub);
    await hub.publish('c', 'old');
    const live = await openSse(`${srv.url}/events`);
    const all = await openSse(`${srv.url}/events`, { 'Last-Event-ID': '0-0' });
    await until(() => app.open.size === 2 && hub.subscribers('c') === 2, 'subscribed');
    await hub.publish('c', 'new');
    await until(() => live.events.length === 1 && all.events.length === 2, 'events');
    expect(live.events.map((e) => e.data)).toEqual(['new']);
    expect(all.events.map((e) => e.data)).toEqual(['old', 'new']);
    live.close();
    all.close();
  });

  it('a first connection is anchored at the last id (id-only frame): cut before its first event, it resumes without a gap', async () => {
    const registry = newRegistry();
    const hub = createHub({ registry, route: '/events', heartbeatMs: 0, retryMs: 20 });
    const { srv } = await serveHub(hub);
    const before: string[] = [];
    for (let i = 0; i < 3; i++) before.push(await hub.publish('c', `old ${i}`));
    await expectAnchoredResume(srv.url, (d) => hub.publish('c', d), 'c', before[2]!);
    // a channel that never held an event anchors at 0-0, from which everything is replayed
    await expectAnchoredResume(srv.url, (d) => hub.publish('fresh', d), 'fresh', '0-0');
    const m = await scrape(registry);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'replayed' })).toBe(2); // the anchor itself is not a resume
  });

  it('an expired id gets 416 with X-Next-Cursor; resuming from the cursor replays what is retained', async () => {
    const registry = newRegistry();
    const hub = createHub({ store: memoryStore({ maxEvents: 10 }), registry, route: '/events', heartbeatMs: 0 });
    const { srv } = await serveHub(hub);
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push(await hub.publish('c', String(i)));
    const r = await get(`${srv.url}/events?lastEventId=${ids[3]}`);
    expect(r.status).toBe(416);
    const next = r.headers['x-next-cursor'] as string;
    expect(next).toMatch(/^[0-9a-f]{12}:\d+-\d+$/);
    expect(JSON.parse(r.body.toString()).error).toEqual({ code: 'STREAMSCOPE_ERR_EXPIRED_EVENT_ID', message: `Last-Event-ID ${ids[3]} is expired`, nextCursor: next });
    expect(r.headers['content-type']).toBe('application/json; charset=utf-8');
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': next });
    await until(() => c.events.length === 10, 'retained events');
    expect(c.events.map((e) => e.id)).toEqual(ids.slice(15));
    c.close();
    // an id from the future (another store, a restart) is unknown: 416 too
    const future = await get(`${srv.url}/events?lastEventId=99999999999999-0`);
    expect(future.status).toBe(416);
    expect(JSON.parse(future.body.toString()).error.code).toBe('STREAMSCOPE_ERR_UNKNOWN_EVENT_ID');
    // resuming from the last event that was dropped loses nothing: not expired
    const edge = await openSse(`${srv.url}/events`, { 'Last-Event-ID': ids[14]! });
    expect(edge.status).toBe(200);
    edge.close();
    const m = await scrape(registry);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'expired' })).toBe(2);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'replayed' })).toBe(2);
  });

  it("with onExpired: 'reset' an expired id opens the stream with a reset event, then live", async () => {
    const registry = newRegistry();
    const hub = createHub({ store: memoryStore({ maxEvents: 5 }), registry, route: '/events', onExpired: 'reset', heartbeatMs: 0 });
    const { srv } = await serveHub(hub);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await hub.publish('c', String(i)));
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': ids[0]! });
    await until(() => c.events.length === 1, 'reset');
    expect(c.status).toBe(200);
    expect(c.events[0]!.event).toBe('reset');
    expect(c.events[0]!.id).toBe(ids[19]);
    expect(JSON.parse(c.events[0]!.data)).toMatchObject({ reason: 'expired', lastEventId: ids[0] });
    const after = await hub.publish('c', 'after');
    await until(() => c.events.length === 2, 'live after reset');
    expect(c.events[1]!.id).toBe(after);
    c.close();
    expect(sum(await scrape(registry), 'stream_resumes_total', { route: '/events', result: 'expired' })).toBe(1);
  });

  it('a memory store restart: an id of the earlier store gets 416 (or reset), never 200 with the events after the restart', async () => {
    // one server, its hub replaced as an app restart would (a new memoryStore, a new epoch)
    let hub = createHub({ store: memoryStore(), heartbeatMs: 0 });
    let resetHub = createHub({ store: hub.store, heartbeatMs: 0, onExpired: 'reset' });
    const srv = await startServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      void (u.searchParams.get('reset') ? resetHub : hub).subscribe(req, res, 'c');
    });
    cleanups.push(() => srv.close());
    const seen: string[] = [];
    for (let i = 1; i <= 10; i++) seen.push(await hub.publish('c', String(i)));
    for (let i = 11; i <= 20; i++) await hub.publish('c', String(i)); // published while the client was away
    await hub.close();
    hub = createHub({ store: memoryStore(), heartbeatMs: 0 });
    resetHub = createHub({ store: hub.store, heartbeatMs: 0, onExpired: 'reset' });
    cleanups.push(() => hub.close());
    const after: string[] = [];
    for (let i = 21; i <= 30; i++) after.push(await hub.publish('c', String(i)));
    const r = await get(`${srv.url}/events?lastEventId=${seen[9]}`);
    expect(r.status).toBe(416);
    const next = r.headers['x-next-cursor'] as string;
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': next });
    await until(() => c.events.length === 10, 'the new store\'s events');
    expect(c.events.map((e) => e.id)).toEqual(after);
    c.close();
    const rs = await openSse(`${srv.url}/events?reset=1`, { 'Last-Event-ID': seen[9]! });
    await until(() => rs.events.length === 1, 'reset');
    expect(rs.events[0]!.event).toBe('reset');
    expect((JSON.parse(rs.events[0]!.data) as { reason: string }).reason).toBe('unknown');
    rs.close();
    // an earlier store's id below the new store's first id, and one above its last: both 416
    for (const id of [seen[0]!, `${seen[0]!.split(':')[0]}:99999999999999-0`]) expect((await get(`${srv.url}/events?lastEventId=${id}`)).status).toBe(416);
  });

  it("a custom store's failing append rejects publish() with STREAMSCOPE_ERR_STORE, the store's error as its cause", async () => {
    const boom = new Error('disk full');
    const base = memoryStore();
    const store: HubStore = {
      kind: 'custom',
      append: () => Promise.reject(boom),
      range: (c, a, n) => base.range(c, a, n),
      info: (c) => base.info(c),
      follow: (c, l) => base.follow(c, l),
      close: () => base.close(),
    };
    const hub = createHub({ store });
    cleanups.push(() => hub.close());
    const err = (await hub.publish('c', 'x').catch((e: unknown) => e)) as { code?: string; cause?: unknown; message?: string };
    expect(err.code).toBe('STREAMSCOPE_ERR_STORE');
    expect(err.cause).toBe(boom);
    expect(err.message).toMatch(/disk full/);
  });

  it('a bare <ms>-<seq> (an id from before epochs) gets 416; a bare 0-0 still replays everything retained', async () => {
    const hub = createHub({ heartbeatMs: 0 });
    const { srv } = await serveHub(hub);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await hub.publish('c', String(i)));
    const bare = ids[1]!.split(':')[1]!;
    expect(bare).toMatch(/^\d+-\d+$/);
    expect((await get(`${srv.url}/events?lastEventId=${bare}`)).status).toBe(416);
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': '0-0' });
    await until(() => c.events.length === 5, 'replay of everything');
    expect(c.events.map((e) => e.id)).toEqual(ids);
    c.close();
  });

  it('a malformed Last-Event-ID gets 400 with a JSON error, counted as invalid, and opens no stream', async () => {
    const registry = newRegistry();
    const hub = createHub({ registry, route: '/events', heartbeatMs: 0 });
    const { srv } = await serveHub(hub);
    for (const bad of ['abc', '1-', '-1', '1-2-3', '99999999999999999999999-0', ' 1 - 2', '1.5-0']) {
      const r = await new Promise<{ status: number; body: string; type: string }>((resolve, reject) => {
        http
          .get(`${srv.url}/events`, { agent: false, headers: { 'Last-Event-ID': bad } }, (res) => {
            let body = '';
            res.on('data', (c) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }));
          })
          .on('error', reject);
      });
      expect(r.status, bad).toBe(400);
      expect(r.type).toMatch(/application\/json/);
      expect(JSON.parse(r.body).error.code).toBe('STREAMSCOPE_ERR_INVALID_EVENT_ID');
    }
    const m = await scrape(registry);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'invalid' })).toBe(7);
    expect(sum(m, 'stream_started_total', { route: '/events' })).toBe(0);
  });

  it('a subscriber that stops reading is cut at maxBufferedBytes; the others get everything; it resumes without loss', async () => {
    const hub = createHub({ heartbeatMs: 0, maxBufferedBytes: 256 * 1024 });
    const { srv, app } = await serveHub(hub);
    const fast = await openSse(`${srv.url}/events`);
    const slow = await openSse(`${srv.url}/events`);
    slow.res.pause();
    await until(() => hub.subscribers('c') === 2, 'two subscribers');
    const payload = 'p'.repeat(8 * 1024);
    const ids: string[] = [];
    const total = 3000; // ~24 MiB: more than the kernel buffers of the slow connection hold
    for (let i = 0; i < total; i++) {
      ids.push(await hub.publish('c', { data: payload + i }));
      // the fast client keeps up (it shares this event loop): never more than 16 events behind
      if (i % 16 === 15) await until(() => fast.events.length === ids.length, 'fast keeps up', 10_000, 1);
    }
    await until(() => fast.events.length === total, 'fast subscriber got all');
    expect(fast.events.map((e) => e.id)).toEqual(ids);
    await until(() => hub.subscribers('c') === 1, 'slow subscriber cut', 30_000);
    slow.res.resume();
    await slow.ended;
    const got = slow.events.map((e) => e.id);
    expect(got.length).toBeLessThan(total);
    expect(got).toEqual(ids.slice(0, got.length));
    const resumed = await openSse(`${srv.url}/events`, { 'Last-Event-ID': got[got.length - 1] ?? '0-0' });
    await until(() => got.length + resumed.events.length === total, 'resumed the rest');
    expect([...got, ...resumed.events.map((e) => e.id)]).toEqual(ids);
    fast.close();
    resumed.close();
    expect(app.open.size).toBeLessThanOrEqual(2);
  });

  it('live events held during a long replay are replayed again from the store when too many: none lost, none doubled', async () => {
    const hub = createHub({ heartbeatMs: 0, maxPendingEvents: 5 });
    const { srv } = await serveHub(hub);
    const ids: string[] = [];
    for (let i = 0; i < 3000; i++) ids.push(await hub.publish('c', String(i)));
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': '0-0' });
    // publish while the replay is running
    for (let i = 3000; i < 4000; i++) {
      ids.push(await hub.publish('c', String(i)));
      if (i % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    await until(() => c.events.length >= 4000, 'all events', 30_000);
    expect(c.events.map((e) => e.id)).toEqual(ids);
    c.close();
  });
});

describe('createHub() channels and shutdown', () => {
  it('channels are isolated, and hub.close() ends every stream as completed', async () => {
    const registry = newRegistry();
    const hub = createHub({ registry, route: '/events', heartbeatMs: 0 });
    const app = hubApp(hub);
    const srv = await startServer(app.handler);
    cleanups.push(() => srv.close());
    const a = await openSse(`${srv.url}/events?channel=a`);
    const b = await openSse(`${srv.url}/events?channel=b`);
    await until(() => hub.subscribers() === 2, 'subscribed');
    await hub.publish('a', 'for a');
    await hub.publish('b', 'for b');
    await until(() => a.events.length === 1 && b.events.length === 1, 'events');
    expect([a.events[0]!.data, b.events[0]!.data]).toEqual(['for a', 'for b']);
    await hub.close();
    await Promise.all([a.ended, b.ended]);
    await expect(hub.publish('a', 'late')).rejects.toMatchObject({ code: 'STREAMSCOPE_ERR_HUB_CLOSED' });
    const m = await until(async () => {
      const x = await scrape(registry);
      return sum(x, 'stream_duration_seconds_count', { route: '/events' }) === 2 ? x : null;
    }, 'closed');
    expect(sum(m!, 'stream_duration_seconds_count', { route: '/events', outcome: 'completed' })).toBe(2);
  });

  it('randomized: any resume point replays exactly the suffix after it, then live (property-based, real sockets)', async () => {
    const hub = createHub({ store: memoryStore({ maxEvents: 1000 }), heartbeatMs: 0 });
    const app = hubApp(hub);
    const srv = await startServer(app.handler);
    cleanups.push(() => srv.close(), () => hub.close());
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 20 }), async (before, at, after) => {
        const channel = `r${run++}`;
        const ids: string[] = [];
        for (let i = 0; i < before; i++) ids.push(await hub.publish(channel, String(i)));
        const from = at === 0 || ids.length === 0 ? '0-0' : ids[Math.min(at, ids.length) - 1]!;
        const skip = from === '0-0' ? 0 : ids.indexOf(from) + 1;
        const c = await openSse(`${srv.url}/events?channel=${channel}`, { 'Last-Event-ID': from });
        await until(() => hub.subscribers(channel) === 1, 'subscribed');
        for (let i = 0; i < after; i++) ids.push(await hub.publish(channel, String(before + i)));
        await until(() => c.events.length >= ids.length - skip, 'events');
        c.close();
        expect(c.events.map((e) => e.id)).toEqual(ids.slice(skip));
      }),
      { numRuns: 25 },
    );
  });
});

describe('the eventsource npm client across server-side cuts', () => {
  it('receives every event exactly once, in order, across at least 20 connection cuts', async () => {
    const registry = newRegistry();
    const hub = createHub({ registry, route: '/events', heartbeatMs: 0, retryMs: 20 });
    const { srv, app } = await serveHub(hub);
    const received: string[] = [];
    const es = new EventSource(`${srv.url}/events?channel=c`);
    cleanups.push(() => es.close());
    es.addEventListener('tick', (e) => received.push(`${e.lastEventId} ${e.data}`));
    await until(() => app.open.size === 1 && hub.subscribers('c') === 1, 'connected');
    const { ids, cuts } = await publishWithCuts({
      publish: (i) => hub.publish('c', { event: 'tick', data: String(i) }),
      cut: () => app.cutAll(),
      connected: () => hub.subscribers('c') === 1,
      total: 600,
      cutEvery: 20,
      minCuts: 20,
      waitFor: (fn, what) => until(fn, what, 20_000, 2),
    });
    expect(cuts).toBeGreaterThanOrEqual(20);
    await until(() => received.length >= ids.length, 'every event', 30_000);
    expect(received).toEqual(ids.map((id, i) => `${id} ${i}`));
    expect(app.subscriptions).toBeGreaterThanOrEqual(21);
    es.close();
    await until(async () => sum(await scrape(registry), 'stream_active_connections', { route: '/events' }) === 0, 'active back to 0');
    const m = await scrape(registry);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'replayed' })).toBeGreaterThanOrEqual(20);
    expect(sum(m, 'stream_duration_seconds_count', { route: '/events' })).toBe(sum(m, 'stream_started_total', { route: '/events' }));
  });
});
