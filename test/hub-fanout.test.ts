import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createHub, redisStore, type Hub, type SubscribeOptions } from '../src/index.js';
import { newRegistry, scrape, sum, until } from './helpers/http.js';
import { startRedis, type RedisServer } from './helpers/redis.js';

/*
 * The live fan-out walks a channel's subscribers in slices, a turn of the event loop each (at most 1,000
 * subscribers written, FANOUT_SLICE in src/runtime/hub/fanout.ts), and the events published while it walks reach
 * each subscriber together, in one write (issue 19). These tests use thousands of real HTTP subscribers on real
 * sockets, and check what the walk must keep: every event once, in order, with its id, to every live subscriber
 * (checksum ones in their form), joins and leaves while it walks, a subscriber that does not read, a fault in one
 * subscriber, hub.close() — and that it does what it is for: fewer writes than events × subscribers, and no
 * turn that writes to every subscriber at once.
 */

/** Subscribers one slice writes at most (FANOUT_SLICE). */
const SLICE = 1000;

const MARK = 'data: ';

/** A light SSE subscriber on a real HTTP request: its body (de-chunked by Node's parser), `data:` lines counted as they come. */
interface Client {
  raw: string;
  count: number;
  crc: boolean;
  closed: boolean;
  close(): void;
}

function connect(target: { port: number } | { socketPath: string }, query: string, headers: Record<string, string> = {}): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c: Client = { raw: '', count: 0, crc: query.includes('crc'), closed: false, close: () => undefined };
    const req = http.get({ ...target, host: '127.0.0.1', path: `/events${query}`, agent: false, headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
      res.setEncoding('utf8');
      let carry = '';
      res.on('data', (chunk: string) => {
        c.raw += chunk;
        const text = carry + chunk;
        for (let i = text.indexOf(MARK); i >= 0; i = text.indexOf(MARK, i + MARK.length)) c.count++;
        carry = text.slice(-(MARK.length - 1));
      });
      res.on('close', () => (c.closed = true));
      resolve(c);
    });
    c.close = () => {
      c.closed = true;
      req.destroy();
    };
    req.on('error', (err) => (c.closed ? undefined : reject(err)));
  });
}

/** The events of a body: id, data and checksum comment; `anchor` is the id-only frame a first connection begins with. */
function parse(raw: string): { anchor: string | undefined; events: Array<{ id: string | undefined; data: string; crc: string | undefined }> } {
  let anchor: string | undefined;
  const events: Array<{ id: string | undefined; data: string; crc: string | undefined }> = [];
  for (const block of raw.split('\n\n')) {
    const lines = block.split('\n');
    const id = lines.find((l) => l.startsWith('id: '))?.slice(4);
    const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
    if (data.length === 0) {
      if (id !== undefined && anchor === undefined && events.length === 0) anchor = id;
      continue;
    }
    events.push({ id, data: data.join('\n'), crc: lines.find((l) => l.startsWith(': crc32='))?.slice(8) });
  }
  return { anchor, events };
}

const crcOf = (id: string, data: string): string => (zlib.crc32(`${id}\n\n${data}`) >>> 0).toString(16).padStart(8, '0');

/** Checks that `c` got exactly `ids` (with `dataOf` their data) after its first `skip` events, each with its checksum if it asked for them. */
function expectExactly(c: Client, skip: number, ids: string[], dataOf: (id: string) => string): void {
  const got = parse(c.raw).events.slice(skip);
  expect(got.map((e) => e.id)).toEqual(ids);
  expect(got.map((e) => e.data)).toEqual(ids.map(dataOf));
  expect(got.map((e) => e.crc)).toEqual(ids.map((id) => (c.crc ? crcOf(id, dataOf(id)) : undefined)));
}

/** Runs `fn` on the next turn of the event loop (an immediate): one publish per turn. */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

interface Served {
  hub: Hub;
  port: number;
  /** A second server on a Unix socket (small kernel buffers: a subscriber there that does not read fills them fast). */
  socketPath: string;
  /** Responses of opened streams, by the request's query. */
  opened: Map<string, http.ServerResponse>;
  /** Distinct server sockets written in each synchronous run of code (a callback and what it calls). */
  runs: number[];
  /** Server socket writes so far. */
  writes: () => number;
  close(): Promise<void>;
}

/** Serves `hub` on TCP and on a Unix socket; counts the server sockets written per synchronous run. */
async function serve(hub: Hub): Promise<Served> {
  const withCrc: SubscribeOptions = { checksum: 'crc32' };
  const opened = new Map<string, http.ServerResponse>();
  const runs: number[] = [];
  let run: Set<net.Socket> | null = null;
  let writes = 0;
  const endRun = (): void => {
    runs.push(run!.size);
    run = null;
  };
  const handler: http.RequestListener = (req, res) => {
    const sock = res.socket!;
    const write = sock.write;
    // counts, changes nothing: the same write is called with the same arguments
    sock.write = function (this: net.Socket, ...args: unknown[]) {
      if (run === null) {
        run = new Set();
        process.nextTick(endRun);
      }
      run.add(sock);
      writes++;
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as typeof sock.write;
    const query = req.url!.slice('/events'.length);
    void hub.subscribe(req, res, 'c', query.includes('crc') ? withCrc : undefined).then((s) => {
      if (s !== null) opened.set(query, res);
    });
  };
  const tcp = http.createServer(handler);
  const socketPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hub-fanout-')), 's');
  const uds = http.createServer(handler);
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => uds.listen(socketPath, r));
  const port = (tcp.address() as net.AddressInfo).port;
  return {
    hub,
    port,
    socketPath,
    opened,
    runs,
    writes: () => writes,
    close: async () => {
      await hub.close();
      for (const s of [tcp, uds]) {
        s.closeAllConnections();
        await new Promise((r) => s.close(r));
      }
      fs.rmSync(path.dirname(socketPath), { recursive: true, force: true });
    },
  };
}

/** Opens `n` subscribers (every 8th with checksums), 200 at a time. */
async function subscribers(port: number, n: number, tag: string): Promise<Client[]> {
  const out: Client[] = [];
  for (let i = 0; i < n; i += 200) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(200, n - i) }, (_, j) => connect({ port }, `?${tag}${i + j}${(i + j) % 8 === 0 ? '&crc' : ''}`)))));
  }
  return out;
}

describe('hub live fan-out walk: 2,400 real subscribers on one channel', () => {
  const N = 2400;
  let s: Served;
  const registry = newRegistry();
  let clients: Client[] = [];
  /** Every id published on the channel, in order, and its data. */
  const all: string[] = [];
  const data = new Map<string, string>();
  const dataOf = (id: string): string => data.get(id)!;
  const publish = async (text: string): Promise<string> => {
    const id = await s.hub.publish('c', text);
    all.push(id);
    data.set(id, text);
    return id;
  };

  /** Between tests (nothing in flight): each client's body starts again, so a test reads only its own events. */
  const fresh = (): void => {
    for (const c of clients) {
      c.raw = '';
      c.count = 0;
    }
  };

  beforeAll(async () => {
    s = await serve(createHub({ heartbeatMs: 0, registry, route: '/events', maxBufferedBytes: 8192 }));
    clients = await subscribers(s.port, N, 'n');
    await until(() => s.hub.subscribers('c') === N && s.opened.size === N, 'all subscribed', 30_000);
    // each first connection has its anchor frame: it is live (nothing to replay on an empty channel)
    await until(() => clients.every((c) => c.raw.includes('id: ')), 'anchors', 30_000);
  }, 60_000);
  beforeEach(fresh);
  afterAll(async () => {
    for (const c of clients) c.close();
    await s?.close();
  });

  it('every subscriber gets every event once, in order, with its id (checksum ones in their form); events published faster than the walk leave in fewer writes than events × subscribers', async () => {
    const w0 = sum(await scrape(registry), 'stream_writes_total', { route: '/events' });
    const ids: string[] = [];
    const E = 40;
    // one event per turn: a walk over 2,400 subscribers takes more than one turn, so events arrive while it goes on
    for (let i = 0; i < E; i++) {
      ids.push(await publish(`once ${i} ✓`));
      await turn();
    }
    await until(() => clients.every((c) => c.count >= E), 'every event everywhere', 60_000);
    for (const c of clients) expectExactly(c, 0, ids, dataOf);
    const writes = sum(await scrape(registry), 'stream_writes_total', { route: '/events' }) - w0;
    // one write per subscriber and event would be E × N: the walk gave several events to most subscribers at once
    expect(writes).toBeLessThan(E * N);
    expect(writes).toBeGreaterThanOrEqual(N);
  }, 120_000);

  it('no synchronous run writes to more than 1,000 subscribers: the loop is never held for a whole fan-out', async () => {
    s.runs.length = 0;
    const E = 10;
    const ids: string[] = [];
    for (let i = 0; i < E; i++) {
      ids.push(await publish(`slice ${i}`));
      await turn();
    }
    await until(() => clients.every((c) => c.count >= E), 'delivered', 60_000);
    for (const c of clients) expectExactly(c, 0, ids, dataOf);
    const most = Math.max(...s.runs);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(SLICE);
    // and the walk did go over everyone: the runs together wrote each subscriber at least once
    expect(s.runs.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(N);
  }, 120_000);

  it('subscribers joining (first connections, resumes) and leaving while the walk goes on: each gets exactly the events after its start, once', async () => {
    const E = 60;
    const ids: string[] = [];
    const leaving = clients.filter((_, i) => i % 24 === 5);
    const staying = clients.filter((_, i) => i % 24 !== 5);
    const firsts: Array<Promise<Client>> = [];
    const resumes: Array<{ from: number; c: Promise<Client> }> = [];
    for (let i = 0; i < E; i++) {
      ids.push(await publish(`join ${i}`));
      if (i >= 5 && i < 45 && i % 5 === 0) {
        // while the walk goes on: 20 new first connections and 20 resumes from an event a few back
        for (let j = 0; j < 20; j++) firsts.push(connect({ port: s.port }, `?first${i}-${j}${j % 4 === 0 ? '&crc' : ''}`));
        const from = all.length - 4;
        for (let j = 0; j < 20; j++) resumes.push({ from, c: connect({ port: s.port }, `?resume${i}-${j}${j % 4 === 1 ? '&crc' : ''}`, { 'Last-Event-ID': all[from - 1]! }) });
      }
      if (i === 20) for (const c of leaving) c.close();
      await turn();
    }
    const joined = await Promise.all(firsts);
    const resumed = await Promise.all(resumes.map(async (r) => ({ from: r.from, c: await r.c })));
    const last = all.length;
    await until(() => staying.every((c) => c.count >= E), 'the others', 60_000);
    await until(() => resumed.every((r) => r.c.count === last - r.from), 'resumed ones', 60_000);
    await until(() => joined.every((c) => parse(c.raw).anchor !== undefined && c.count === last - all.indexOf(parse(c.raw).anchor!) - 1), 'joined ones', 60_000);
    for (const c of staying) expectExactly(c, 0, ids, dataOf);
    for (const r of resumed) expectExactly(r.c, 0, all.slice(r.from), dataOf);
    for (const c of joined) expectExactly(c, 0, all.slice(all.indexOf(parse(c.raw).anchor!) + 1), dataOf);
    // those that left: a gapless start of this test's events (what reached them before they left), no repeat
    for (const c of leaving) {
      const got = parse(c.raw).events.map((e) => e.id);
      expect(got).toEqual(ids.slice(0, got.length));
    }
    await until(() => s.hub.subscribers('c') === staying.length + joined.length + resumed.length, 'the leavers left');
    clients = [...staying, ...joined, ...resumed.map((r) => r.c)];
  }, 120_000);

  it('a subscriber that does not read, beside thousands that do: cut at maxBufferedBytes, its queue never past it; the others get everything', async () => {
    // about 1,300 subscribers stay (two slices a pass): each reads some 100 KiB before the slow one is cut
    for (const c of clients.slice(1300)) c.close();
    clients = clients.slice(0, 1300);
    await until(() => s.hub.subscribers('c') === 1300, 'the others left');
    const slowReq = http.get({ socketPath: s.socketPath, path: '/events?slow', agent: false, headers: { Accept: 'text/event-stream' } }, (res) => res.pause());
    slowReq.on('error', () => undefined);
    await until(() => s.opened.has('?slow'), 'slow subscribed');
    const slow = s.opened.get('?slow')!;
    const n = s.hub.subscribers('c');
    const ids: string[] = [];
    let maxQueued = 0;
    const payload = 'p'.repeat(1000);
    for (let i = 0; i < 2000 && s.hub.subscribers('c') === n; i++) {
      ids.push(await publish(`${payload} ${i}`));
      await turn();
      if (!slow.destroyed) maxQueued = Math.max(maxQueued, slow.writableLength);
    }
    expect(s.hub.subscribers('c')).toBe(n - 1); // the slow one was cut once its kernel buffers were full
    expect(slow.destroyed).toBe(true);
    // sampled every turn while it was open (a write of several events that would leave more cuts it at once)
    expect(maxQueued).toBeLessThanOrEqual(8192);
    for (let i = 0; i < 10; i++) {
      ids.push(await publish(`after ${i}`));
      await turn();
    }
    await until(() => clients.every((c) => c.count >= ids.length), 'the others got everything', 60_000);
    for (const c of clients) expectExactly(c, 0, ids, dataOf);
    slowReq.destroy();
  }, 120_000);

  it('hub.close() during a walk stops it: its next slice is no longer scheduled, and none runs', async () => {
    // the walk's immediates (those given a channel's fan-out), seen through the global setImmediate it calls
    const pending = new Set<NodeJS.Immediate>();
    let ran = 0;
    const realSet = globalThis.setImmediate;
    const realClear = globalThis.clearImmediate;
    const isWalk = (arg: unknown): boolean => typeof arg === 'object' && arg !== null && (arg as { subs?: unknown }).subs instanceof Set;
    globalThis.setImmediate = ((cb: (...a: unknown[]) => void, ...args: unknown[]) => {
      if (!isWalk(args[0])) return realSet(cb, ...args);
      const h: NodeJS.Immediate = realSet((...a: unknown[]) => {
        pending.delete(h);
        ran++;
        cb(...a);
      }, ...args);
      pending.add(h);
      return h;
    }) as typeof setImmediate;
    globalThis.clearImmediate = ((h: NodeJS.Immediate | undefined) => {
      if (h !== undefined) pending.delete(h);
      realClear(h);
    }) as typeof clearImmediate;
    try {
      expect(s.hub.subscribers('c')).toBeGreaterThan(SLICE); // a pass takes more than one slice
      void publish('last');
      await new Promise<void>((r) => process.nextTick(r)); // after the walk's first slice (a tick)
      expect(pending.size).toBe(1); // the walk goes on in the next turn
      const closing = s.hub.close();
      expect(pending.size).toBe(0);
      const before = ran;
      await closing;
      await turn();
      await turn();
      expect(ran).toBe(before);
    } finally {
      globalThis.setImmediate = realSet;
      globalThis.clearImmediate = realClear;
    }
  });
});

describe('hub live fan-out: a fault in one subscriber', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  it('is counted (hub), ends that subscriber\'s stream (its client resumes from its last event), and the walk goes on for the others', async () => {
    const registry = newRegistry();
    const s = await serve(createHub({ heartbeatMs: 0, registry }));
    cleanups.push(() => s.close());
    const a = await connect({ port: s.port }, '?a');
    await until(() => s.opened.has('?a'), 'a');
    const b = await connect({ port: s.port }, '?b');
    await until(() => s.opened.has('?b'), 'b');
    const c = await connect({ port: s.port }, '?c');
    await until(() => s.opened.has('?c') && s.hub.subscribers('c') === 3, 'c');
    const first = await s.hub.publish('c', 'first');
    await until(() => a.count === 1 && b.count === 1 && c.count === 1, 'first');
    const f0 = sum(await scrape(registry), 'streamscope_internal_errors_total', { component: 'hub' });
    // b's socket throws once when the fan-out asks whether it is writable
    const sock = s.opened.get('?b')!.socket!;
    Object.defineProperty(sock, 'writable', {
      configurable: true,
      get() {
        delete (sock as { writable?: boolean }).writable;
        throw new Error('injected fault');
      },
    });
    const ids = [first];
    for (let i = 0; i < 5; i++) {
      ids.push(await s.hub.publish('c', `after ${i}`));
      await turn();
    }
    await until(() => a.count === 6 && c.count === 6, 'a and c got every event');
    expect(parse(a.raw).events.map((e) => e.id)).toEqual(ids);
    expect(parse(c.raw).events.map((e) => e.id)).toEqual(ids);
    await until(() => b.closed, "b's stream ended");
    expect(parse(b.raw).events.map((e) => e.id)).toEqual([first]);
    expect(sum(await scrape(registry), 'streamscope_internal_errors_total', { component: 'hub' }) - f0).toBe(1);
    // b comes back with its last id and gets the rest, once
    const back = await connect({ port: s.port }, '?b2', { 'Last-Event-ID': first });
    await until(() => back.count === 5, 'b resumed');
    expect(parse(back.raw).events.map((e) => e.id)).toEqual(ids.slice(1));
    for (const x of [a, c, back]) x.close();
  });
});

describe('hub live fan-out: a publisher far ahead of the walk', () => {
  it('more than 10,000 events waiting (FANOUT_QUEUE_MAX) are written at once, in the publish that passes it: the queue never holds more; all arrive once, in order', async () => {
    const s = await serve(createHub({ heartbeatMs: 0, maxBufferedBytes: 64 * 1024 * 1024 }));
    try {
      const a = await connect({ port: s.port }, '?a');
      await until(() => s.opened.has('?a') && a.raw.includes('id: '), 'subscribed');
      const w0 = s.writes();
      const published: Array<Promise<string>> = [];
      // one tick: the walk's first slice would run after it; the 10,001st and 20,002nd events make it run now
      for (let i = 0; i < 25_000; i++) published.push(s.hub.publish('c', `q ${i}`));
      const duringTheTick = s.writes() - w0;
      const ids = await Promise.all(published);
      await until(() => a.count === 25_000, 'all events', 30_000);
      // (a catch-up this large goes through res.write: a few socket writes each; without the cap, none in the tick)
      expect(duringTheTick).toBeGreaterThan(0);
      expect(parse(a.raw).events.map((e) => e.id)).toEqual(ids);
      a.close();
    } finally {
      await s.close();
    }
  });
});

describe('hub live fan-out on a redisStore (a real redis-server): the same walk', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('1,200 subscribers (checksum ones among them) get every event once, in order, with ids, in fewer writes than events × subscribers', async () => {
    const registry = newRegistry();
    const s = await serve(createHub({ heartbeatMs: 0, registry, route: '/events', store: redisStore({ url: redis.url, keyPrefix: 'fanout:' }) }));
    const N = 1200;
    const clients = await subscribers(s.port, N, 'r');
    try {
      await until(() => s.hub.subscribers('c') === N && s.opened.size === N, 'all subscribed', 30_000);
      await until(() => clients.every((c) => c.raw.includes('id: ')), 'anchors', 30_000);
      const w0 = sum(await scrape(registry), 'stream_writes_total', { route: '/events' });
      const ids: string[] = [];
      const E = 40;
      // published without waiting for each other: the blocking reader brings them in batches, fanned out by the walk
      ids.push(...(await Promise.all(Array.from({ length: E }, (_, i) => s.hub.publish('c', `redis ${i}`)))));
      await until(() => clients.every((c) => c.count >= E), 'every event everywhere', 60_000);
      const dataOf = (id: string): string => `redis ${ids.indexOf(id)}`;
      // the store's order (publishes in flight together): every subscriber gets the same, each event once
      const byStore = parse(clients[0]!.raw).events.map((e) => e.id!);
      expect([...byStore].sort()).toEqual([...ids].sort());
      for (const c of clients) expectExactly(c, 0, byStore, dataOf);
      const writes = sum(await scrape(registry), 'stream_writes_total', { route: '/events' }) - w0;
      expect(writes).toBeLessThan(E * N);
    } finally {
      for (const c of clients) c.close();
      await s.close();
    }
  }, 120_000);
});
