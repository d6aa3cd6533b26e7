import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { createHub, type Hub, type SubscribeOptions } from '../src/index.js';
import { neverReadingClient, newRegistry, scrape, startServer, sum, until, type TestServer } from './helpers/http.js';
import { openSse, type RawSse } from './helpers/sse.js';

/*
 * The hub's live fan-out writes one shared, pre-built chunk straight to each subscriber's socket when
 * nothing but Node and the tracker write that response (issue 19). These tests serve the hub with a plain
 * handler — no wrapper around res.write, so that path is the one taken — and check what it must keep:
 * each subscriber's own ids, checksums, HTTP/1.0 framing, the tracker's counts, a wrapper installed later,
 * and the maxBufferedBytes cap below the socket's high-water mark.
 */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** Serves `hub` on /events with nothing around res.write; `opened` gets each response once its stream is open. */
async function serve(hub: Hub, perRequest?: (req: http.IncomingMessage) => SubscribeOptions | undefined) {
  const opened: http.ServerResponse[] = [];
  const srv: TestServer = await startServer((req, res) => {
    void hub.subscribe(req, res, 'c', perRequest?.(req)).then((s) => {
      if (s !== null) opened.push(res);
    });
  });
  cleanups.push(() => srv.close(), () => hub.close());
  return { srv, opened };
}

/** An HTTP/1.0 SSE client (no chunked encoding): the raw body after the headers. */
function http10Client(port: number): Promise<{ body: () => string; sock: net.Socket }> {
  return new Promise((resolve, reject) => {
    let raw = '';
    const sock = net.connect({ port, host: '127.0.0.1' }, () => {
      sock.write('GET /events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n');
    });
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => {
      const first = raw === '';
      raw += c;
      if (first) resolve({ sock, body: () => raw.slice(raw.indexOf('\r\n\r\n') + 4) });
    });
    sock.on('error', reject);
    cleanups.push(() => void sock.destroy());
  });
}

/** The `id:`/`data:` pairs of an SSE body (blocks with data only). */
function eventsOf(body: string): Array<{ id: string | undefined; data: string }> {
  const out: Array<{ id: string | undefined; data: string }> = [];
  for (const block of body.split('\n\n')) {
    const lines = block.split('\n');
    const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
    if (data.length === 0) continue;
    out.push({ id: lines.find((l) => l.startsWith('id: '))?.slice(4), data: data.join('\n') });
  }
  return out;
}

const crcOf = (id: string, data: string): string => (zlib.crc32(`${id}\n\n${data}`) >>> 0).toString(16).padStart(8, '0');

describe('hub live fan-out (shared bytes, direct writes)', () => {
  it('subscribers resuming from different ids, a first connection, a checksum subscriber and an HTTP/1.0 client each get their own events and ids', async () => {
    const hub = createHub({ heartbeatMs: 0 });
    const withCrc: SubscribeOptions = { checksum: 'crc32' };
    const { srv, opened } = await serve(hub, (req) => (req.url?.includes('crc') ? withCrc : undefined));
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await hub.publish('c', `old ${i}`));
    const fromThree = await openSse(`${srv.url}/events`, { 'Last-Event-ID': ids[3]! });
    const fromSeven = await openSse(`${srv.url}/events`, { 'Last-Event-ID': ids[7]! });
    const first = await openSse(`${srv.url}/events`);
    const crc = await openSse(`${srv.url}/events?crc`, { 'Last-Event-ID': ids[5]! });
    const old = await http10Client(srv.port);
    await until(() => opened.length === 5 && fromThree.events.length === 6 && fromSeven.events.length === 2 && crc.events.length === 4, 'replayed, live');
    const live: string[] = [];
    // one event at a time and a burst in one tick (one write per socket for it): both through the live path
    for (let i = 0; i < 20; i++) live.push(await hub.publish('c', `live ${i} ✓`));
    const burst = Array.from({ length: 30 }, (_, i) => hub.publish('c', { data: `burst ${i}\nsecond line` }));
    live.push(...(await Promise.all(burst)));
    const all = [...ids, ...live];
    const dataOf = (id: string): string => {
      const i = all.indexOf(id);
      return i < 10 ? `old ${i}` : i < 30 ? `live ${i - 10} ✓` : `burst ${i - 30}\nsecond line`;
    };
    const expectEvents = (c: RawSse, after: number): void => {
      expect(c.events.map((e) => e.id)).toEqual(all.slice(after + 1));
      expect(c.events.map((e) => e.data)).toEqual(all.slice(after + 1).map(dataOf));
    };
    await until(() => fromThree.events.length === 56 && fromSeven.events.length === 52 && first.events.length === 50 && crc.events.length === 54, 'live events');
    expectEvents(fromThree, 3);
    expectEvents(fromSeven, 7);
    expectEvents(first, 9);
    expectEvents(crc, 5);
    // the checksum form goes only to the subscriber that asked for it, and covers that event's own id
    expect(crc.comments.filter((c) => c.startsWith('crc32='))).toEqual(all.slice(6).map((id) => `crc32=${crcOf(id, dataOf(id))}`));
    expect(first.comments.some((c) => c.startsWith('crc32='))).toBe(false);
    // HTTP/1.0: no chunked encoding, so the bytes are the frames alone
    await until(() => eventsOf(old.body()).length === 50, 'HTTP/1.0 client got the live events');
    expect(eventsOf(old.body())).toEqual(live.map((id) => ({ id, data: dataOf(id) })));
    expect(old.body()).not.toContain('\r'); // no chunk framing in an HTTP/1.0 body
    for (const c of [fromThree, fromSeven, first, crc]) c.close();
  });

  it('stream_writes_total and stream_bytes_written_total count live events written straight to the socket; a burst of one tick is one write per subscriber', async () => {
    const registry = newRegistry();
    const hub = createHub({ heartbeatMs: 0, registry, route: '/events' });
    const { srv, opened } = await serve(hub);
    const a = await openSse(`${srv.url}/events`);
    const b = await openSse(`${srv.url}/events`);
    await until(() => opened.length === 2 && hub.subscribers('c') === 2, 'two subscribers');
    const before = await scrape(registry);
    const w0 = sum(before, 'stream_writes_total', { route: '/events' });
    const b0 = sum(before, 'stream_bytes_written_total', { route: '/events' });
    const bodyBefore = Buffer.byteLength(a.raw) + Buffer.byteLength(b.raw);
    // one event per turn: nothing is held back, each goes out alone
    for (let i = 0; i < 40; i++) {
      await hub.publish('c', { event: 'e', data: `é ${i}` });
      await new Promise(setImmediate);
    }
    await until(() => a.events.length === 40 && b.events.length === 40, 'events');
    const mid = await scrape(registry);
    // one write per event and subscriber; the bytes are the frames' (UTF-8), chunk framing not counted
    expect(sum(mid, 'stream_writes_total', { route: '/events' }) - w0).toBe(80);
    expect(sum(mid, 'stream_bytes_written_total', { route: '/events' }) - b0).toBe(Buffer.byteLength(a.raw) + Buffer.byteLength(b.raw) - bodyBefore);
    // 40 events published in one tick: one write (one chunk of 40 frames) per subscriber
    const burst = await Promise.all(Array.from({ length: 40 }, (_, i) => hub.publish('c', { event: 'e', data: `burst ${i}` })));
    await until(() => a.events.length === 80 && b.events.length === 80, 'burst');
    expect(a.events.slice(40).map((e) => e.id)).toEqual(burst);
    expect(b.events.slice(40).map((e) => e.id)).toEqual(burst);
    const after = await scrape(registry);
    expect(sum(after, 'stream_writes_total', { route: '/events' }) - w0).toBe(82);
    expect(sum(after, 'stream_bytes_written_total', { route: '/events' }) - b0).toBe(Buffer.byteLength(a.raw) + Buffer.byteLength(b.raw) - bodyBefore);
    a.close();
    b.close();
  });

  it('a tracked subscriber (hub with a route) gets each live event as one socket write: the direct path is taken', async () => {
    const hub = createHub({ heartbeatMs: 0, registry: newRegistry(), route: '/events-direct' });
    const { srv, opened } = await serve(hub);
    const a = await openSse(`${srv.url}/events`);
    await until(() => opened.length === 1 && hub.subscribers('c') === 1, 'one subscriber');
    await hub.publish('c', { event: 'e', data: 'first' }); // the stream's first write goes through res.write
    await until(() => a.events.length === 1, 'the first event');
    const sock = opened[0]!.socket!;
    const calls: number[] = [];
    const own = sock.write.bind(sock) as (...args: unknown[]) => boolean;
    (sock as unknown as { write: (...args: unknown[]) => boolean }).write = (...args: unknown[]) => {
      calls.push(Buffer.byteLength(args[0] as Buffer | string));
      return own(...args);
    };
    for (let i = 0; i < 5; i++) {
      await hub.publish('c', { event: 'e', data: `live ${i}` });
      await until(() => a.events.length === 2 + i, `event ${i}`);
    }
    // Node's chunked res.write is several socket writes per event (size line, data, CRLF); the shared chunk is one
    expect(calls.length).toBe(5);
    a.close();
  });

  it('a wrapper put over res.write after the stream opened (compression) gets every live event', async () => {
    const hub = createHub({ heartbeatMs: 0 });
    const { srv, opened } = await serve(hub);
    const c = await openSse(`${srv.url}/events`);
    await until(() => opened.length === 1 && hub.subscribers('c') === 1, 'subscribed');
    const res = opened[0]!;
    const seen: string[] = [];
    const write = res.write;
    res.write = function (this: http.ServerResponse, chunk: unknown, ...rest: unknown[]) {
      seen.push(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
      return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof res.write;
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await hub.publish('c', `after wrap ${i}`));
    await until(() => c.events.length === 10, 'events');
    expect(eventsOf(seen.join(''))).toEqual(ids.map((id, i) => ({ id, data: `after wrap ${i}` })));
    c.close();
  });

  it('a subscriber that stops reading is cut at a maxBufferedBytes below the socket high-water mark, its queue never past it; a fast one gets everything', async () => {
    const cap = 4096;
    const hub = createHub({ heartbeatMs: 0, maxBufferedBytes: cap });
    const { srv, opened } = await serve(hub);
    const fast = await openSse(`${srv.url}/events`);
    await until(() => opened.length === 1, 'fast subscribed');
    const slowSock = await neverReadingClient(srv.port, '/events');
    cleanups.push(() => void slowSock.destroy());
    await until(() => opened.length === 2 && hub.subscribers('c') === 2, 'slow subscribed');
    const slow = opened[1]!;
    expect(slow.socket!.writableHighWaterMark).toBeGreaterThan(cap);
    const payload = 'p'.repeat(1000);
    const ids: string[] = [];
    let maxQueued = 0;
    for (let i = 0; i < 20_000 && hub.subscribers('c') === 2; i++) {
      ids.push(await hub.publish('c', payload + i));
      maxQueued = Math.max(maxQueued, slow.writableLength);
      // one event per tick (the events of one tick go out in one write, and 5 of these pass the cap), and
      // the fast client reads on this event loop: let it, every few events
      await new Promise(setImmediate);
      if (i % 8 === 7) await until(() => fast.events.length === ids.length, 'fast keeps up', 10_000, 1);
    }
    expect(hub.subscribers('c')).toBe(1); // the slow one was cut (its kernel buffers filled first)
    expect(maxQueued).toBeGreaterThan(0);
    expect(maxQueued).toBeLessThanOrEqual(cap);
    for (let i = 0; i < 20; i++) {
      ids.push(await hub.publish('c', payload + 'after'));
      await new Promise(setImmediate);
    }
    await until(() => fast.events.length === ids.length, 'fast subscriber got all');
    expect(fast.events.map((e) => e.id)).toEqual(ids);
    fast.close();
  });
});
