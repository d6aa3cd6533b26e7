import http from 'node:http';
import net from 'node:net';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { expect } from 'vitest';
import { until } from './http.js';

/** An SSE client over a real socket that records raw bytes and parsed events (eventsource-parser). */
export interface RawSse {
  status: number;
  headers: http.IncomingHttpHeaders;
  events: EventSourceMessage[];
  comments: string[];
  retry: number[];
  raw: string;
  ended: Promise<void>;
  res: http.IncomingMessage;
  close(): void;
}

export function openSse(url: string, headers: Record<string, string> = {}): Promise<RawSse> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
      const out: RawSse = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: [],
        comments: [],
        retry: [],
        raw: '',
        res,
        ended: new Promise<void>((r) => {
          res.on('end', r);
          res.on('close', r);
          res.on('error', () => r());
        }),
        close: () => req.destroy(),
      };
      const parser = createParser({
        onEvent: (e) => out.events.push(e),
        onComment: (c) => out.comments.push(c),
        onRetry: (r) => out.retry.push(r),
      });
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        out.raw += c;
        parser.feed(c);
      });
      resolve(out);
    });
    req.on('error', reject);
  });
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * A round-robin TCP proxy: each new connection goes to the next backend, so an SSE client that
 * reconnects lands on the other instance. `close()` destroys every piped socket.
 */
export async function roundRobinProxy(backends: number[]): Promise<{ port: number; url: string; connections: number[]; log: string[]; close(): Promise<void> }> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const connections = backends.map(() => 0);
  /** One line per proxied connection, for a failing test's report. */
  const log: string[] = [];
  const t0 = Date.now();
  const server = net.createServer((client) => {
    const n = next++;
    const i = n % backends.length;
    connections[i]++;
    const upstream = net.connect({ port: backends[i] as number, host: '127.0.0.1' });
    sockets.add(client);
    sockets.add(upstream);
    let down = 0;
    let closed = false;
    upstream.on('data', (c: Buffer) => (down += c.length));
    const done = (why: string) => (): void => {
      if (!closed) {
        closed = true;
        log.push(`p${n}->${'ab'[i] ?? i} +${Date.now() - t0} ${why}: down ${down} client queued ${client.writableLength} up readable ${upstream.readableLength}`);
      }
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', done('client error'));
    upstream.on('error', done('upstream error'));
    client.on('close', done('client close'));
    upstream.on('close', done('upstream close'));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    connections,
    log,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

import type { Hub, SubscribeOptions } from '../../src/index.js';

/**
 * A small app around a hub: `GET /events` subscribes to channel `c` (or `?channel=`), `GET /` serves
 * `page`. It keeps the open event-stream responses so that a test can cut them server-side.
 */
export function hubApp(hub: Hub, options?: SubscribeOptions, page = '<!doctype html><title>t</title>') {
  const open = new Set<http.ServerResponse>();
  const cutNotes = new WeakMap<http.ServerResponse, string>();
  /** The Last-Event-ID header of each event-stream request, in order. */
  const lastEventIds: Array<string | undefined> = [];
  /** One line per event-stream request, for a failing test's report: Last-Event-ID in, bytes out, how it ended. */
  const log: string[] = [];
  const t0 = Date.now();
  let subscriptions = 0;
  const handler: http.RequestListener = (req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/events') {
      const n = ++subscriptions;
      lastEventIds.push(req.headers['last-event-id'] as string | undefined);
      const at = Date.now() - t0;
      const socket = req.socket;
      open.add(res);
      const writes: string[] = [];
      const write = res.write;
      res.write = function (this: http.ServerResponse, ...args: unknown[]) {
        if (writes.length < 40) writes.push(`+${Date.now() - t0}:${typeof args[0] === 'string' ? args[0].length : '?'}`);
        return (write as (...a: unknown[]) => boolean).apply(this, args);
      } as typeof res.write;
      res.on('close', () => {
        open.delete(res);
        log.push(
          `#${n} +${at}ms..+${Date.now() - t0}ms last-event-id=${req.headers['last-event-id'] ?? '-'} status=${res.headersSent ? res.statusCode : '-'} socket bytes out=${socket.bytesWritten} ${cutNotes.get(res) ?? 'not cut'} writes ${writes.join(' ')}`,
        );
      });
      void hub.subscribe(req, res, u.searchParams.get('channel') ?? 'c', options);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page);
  };
  return {
    handler,
    open,
    log,
    lastEventIds,
    get subscriptions() {
      return subscriptions;
    },
    /** Destroys every open event-stream connection (a network cut, not a close); returns how many. */
    cutAll(): number {
      let n = 0;
      for (const res of open) {
        if (res.headersSent && !res.destroyed) {
          const so = res.socket;
          cutNotes.set(res, `cut at +${Date.now() - t0} (socket queued ${so?.writableLength} corked ${so?.writableCorked} written ${so?.bytesWritten})`);
          res.socket?.destroy();
          n++;
        }
      }
      return n;
    },
  };
}

/**
 * Publishes `total` events at a steady pace and, every `cutEvery` events, cuts the connection of
 * every subscriber — counting a cut only when one was really open — until at least `minCuts` cuts
 * happened. Returns the ids in publish order.
 */
export async function publishWithCuts(opts: {
  publish: (i: number) => Promise<string>;
  cut: () => number;
  connected: () => boolean;
  total: number;
  cutEvery: number;
  minCuts: number;
  waitFor: (fn: () => boolean, what: string) => Promise<unknown>;
}): Promise<{ ids: string[]; cuts: number }> {
  const ids: string[] = [];
  let cuts = 0;
  for (let i = 0; i < opts.total || cuts < opts.minCuts; i++) {
    ids.push(await opts.publish(i));
    if (i % opts.cutEvery === opts.cutEvery - 1) {
      await opts.waitFor(opts.connected, 'a subscriber to be connected');
      if (opts.cut() > 0) cuts++;
    }
    if (i % 3 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  // one more event once the client is back, so the last cut's reconnect is part of every check
  await opts.waitFor(opts.connected, 'the subscriber to reconnect after the last cut');
  ids.push(await opts.publish(ids.length));
  return { ids, cuts };
}

/** The id of the first id-only frame (`id: X` and no other field) of a raw SSE body, if any. */
export function idOnlyFrame(raw: string): string | undefined {
  for (const frame of raw.split('\n\n')) {
    const m = /^id: ?([^\n]*)$/.exec(frame);
    if (m !== null) return m[1];
  }
  return undefined;
}

/**
 * A first connection (no Last-Event-ID) on `channel` of a hubApp at `url` is anchored: its stream carries an
 * id-only frame with the channel's last id (dispatching no event), so a client cut before its first event
 * resumes from there and misses nothing published while it was away. Returns the anchor.
 */
export async function expectAnchoredResume(url: string, publish: (data: string) => Promise<string>, channel: string, lastBefore: string): Promise<string> {
  const first = await openSse(`${url}/events?channel=${channel}`);
  await until(() => idOnlyFrame(first.raw) !== undefined, 'the anchor frame');
  const anchor = idOnlyFrame(first.raw) as string;
  // '0-0' stands for the zero id of the store's epoch (`<epoch>:0-0`), which the caller cannot know beforehand
  if (lastBefore === '0-0') expect(anchor).toMatch(/^[0-9a-z]{1,32}:0-0$/);
  else expect(anchor).toBe(lastBefore);
  first.close();
  await first.ended;
  expect(first.events).toEqual([]); // an id-only frame dispatches nothing
  const missed: string[] = [];
  for (let i = 0; i < 5; i++) missed.push(await publish(`missed ${i}`));
  const again = await openSse(`${url}/events?channel=${channel}`, { 'Last-Event-ID': anchor });
  try {
    await until(() => again.events.length >= missed.length, 'the events published while away');
    expect(again.events.map((e) => e.id)).toEqual(missed);
    expect(again.events.map((e) => e.data)).toEqual(missed.map((_, i) => `missed ${i}`));
    expect(idOnlyFrame(again.raw)).toBeUndefined(); // a resume has an id already: no anchor
  } finally {
    again.close();
  }
  return anchor;
}
