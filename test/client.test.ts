import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compareIds, createHub, encodeEvent, memoryStore, sse, type Hub, type SubscribeOptions } from '../src/index.js';
import { connect, type ClientEvent, type ClientOptions, type DropReason, type ResetInfo, type SseClient } from '../src/client/index.js';
import { compareParsed, parseId } from '../src/client/ids.js';
import { startServer, until, type TestServer } from './helpers/http.js';
import { hubApp, publishWithCuts } from './helpers/sse.js';
import { faultProxy } from './helpers/fault-proxy.js';

/**
 * streamscope/client in Node against real servers (a hub on node:http, a TCP proxy that corrupts or cuts):
 * what it delivers, drops, reports and how often it reconnects. The browser run is test/browser-client.test.ts.
 */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

interface Recorded {
  client: SseClient;
  events: ClientEvent[];
  drops: Array<{ reason: DropReason; id: string | undefined }>;
  resets: ResetInfo[];
  errors: Array<{ code: string; message: string }>;
  opens: number[];
}

function record(url: string, options: Partial<ClientOptions> = {}): Recorded {
  const r: Recorded = { events: [], drops: [], resets: [], errors: [], opens: [], client: null as unknown as SseClient };
  r.client = connect(url, {
    retryMs: 20,
    ...options,
    onEvent: (e) => r.events.push(e),
    onDrop: (reason, id) => r.drops.push({ reason, id }),
    onReset: (i) => r.resets.push(i),
    onError: (e) => r.errors.push({ code: e.code, message: e.message }),
    onOpen: () => r.opens.push(Date.now()),
  });
  cleanups.push(() => r.client.close());
  return r;
}

async function serveHub(hub: Hub, options?: SubscribeOptions) {
  const app = hubApp(hub, options);
  const srv: TestServer = await startServer(app.handler);
  cleanups.push(() => srv.close(), () => hub.close());
  return { app, srv };
}

describe('streamscope/client against a checksummed hub', () => {
  it('server-side cuts every 10 events: every event exactly once, in order (resumes with Last-Event-ID)', async () => {
    const hub = createHub({ checksum: 'crc32', heartbeatMs: 0, retryMs: 20 });
    const { app, srv } = await serveHub(hub);
    const r = record(`${srv.url}/events`);
    await until(() => hub.subscribers('c') === 1 && r.client.lastEventId !== undefined, 'connected, anchored');
    const { ids, cuts } = await publishWithCuts({
      publish: (i) => hub.publish('c', { event: 'tick', data: `e${i}` }),
      cut: () => app.cutAll(),
      connected: () => hub.subscribers('c') === 1 && app.open.size === 1,
      total: 100,
      cutEvery: 10,
      minCuts: 8,
      waitFor: (fn, what) => until(fn, what, 20_000, 2),
    });
    expect(cuts).toBeGreaterThanOrEqual(8);
    await until(() => r.events.length >= ids.length, 'every event');
    expect(r.events.map((e) => `${e.id} ${e.event} ${e.data}`)).toEqual(ids.map((id, i) => `${id} tick e${i}`));
    expect(r.drops).toEqual([]);
    expect(r.client.connections).toBeGreaterThanOrEqual(cuts + 1);
  });

  it('a proxy flips one byte inside one event: the client drops it, resumes from the last good one, and gets it intact (a client that does not verify gets the corrupted data)', async () => {
    const hub = createHub({ checksum: 'crc32', heartbeatMs: 0, retryMs: 20 });
    const { srv } = await serveHub(hub);
    const proxy = await faultProxy([srv.port]);
    cleanups.push(() => proxy.close());
    const datas = Array.from({ length: 30 }, (_, i) => (i === 12 ? 'FLIP-ME-12' : `e${i}`));

    const run = async (checksum: 'crc32' | 'none'): Promise<Recorded> => {
      const r = record(`${proxy.url}/events`, { checksum });
      await until(() => hub.subscribers('c') === 1 && r.client.lastEventId !== undefined, 'connected');
      const flipped = proxy.flip('FLIP-ME');
      const ids: string[] = [];
      for (const d of datas) ids.push(await hub.publish('c', d));
      await flipped;
      await until(() => r.events.length >= datas.length || (checksum === 'none' && r.events.length === datas.length), 'every event', 20_000);
      r.client.close();
      await until(() => hub.subscribers('c') === 0, 'gone');
      return r;
    };
    const verified = await run('crc32');
    expect(verified.events.map((e) => e.data)).toEqual(datas);
    expect(new Set(verified.events.map((e) => e.id)).size).toBe(datas.length);
    expect(verified.drops.map((d) => d.reason)).toEqual(['checksum']);
    expect(verified.client.connections).toBe(2);
    // the same fault against a client that does not verify: it is delivered corrupted
    const unverified = await run('none');
    expect(unverified.events.map((e) => e.data)[12]).toBe('GLIP-ME-12');
  });

  it('a proxy cuts the connection in the middle of an event: the partial event is never delivered; it comes whole after the resume', async () => {
    const hub = createHub({ checksum: 'crc32', heartbeatMs: 0, retryMs: 20 });
    const { srv } = await serveHub(hub);
    const proxy = await faultProxy([srv.port]);
    cleanups.push(() => proxy.close());
    const r = record(`${proxy.url}/events`);
    await until(() => hub.subscribers('c') === 1 && r.client.lastEventId !== undefined, 'connected');
    const cut = proxy.cut('CUT-IN-HERE');
    const datas = Array.from({ length: 30 }, (_, i) => (i === 7 ? `CUT-IN-HERE ${'x'.repeat(200)}` : `e${i}`));
    for (const d of datas) await hub.publish('c', d);
    await cut;
    await until(() => r.events.length >= datas.length, 'every event', 20_000);
    expect(r.events.map((e) => e.data)).toEqual(datas);
    expect(proxy.log.join('\n')).toMatch(/mid-event/);
    expect(r.client.connections).toBe(2);
  });

  it('duplicated and out-of-order ids are dropped, once each, without a reconnect', async () => {
    const ev = (id: string, data: string): string => encodeEvent({ id, data }, { checksum: 'crc32' });
    const srv = await startServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write(ev('ep:5-0', 'a') + ev('ep:5-1', 'b') + ev('ep:5-1', 'b again') + ev('ep:4-9', 'older') + ev('ep:10-0', 'c'));
    });
    cleanups.push(() => srv.close());
    const r = record(srv.url);
    await until(() => r.events.length >= 3, 'events');
    await new Promise((res) => setTimeout(res, 100));
    expect(r.events.map((e) => e.data)).toEqual(['a', 'b', 'c']);
    expect(r.drops).toEqual([
      { reason: 'duplicate', id: 'ep:5-1' },
      { reason: 'duplicate', id: 'ep:4-9' },
    ]);
    expect(r.client.connections).toBe(1);
  });
});

describe("streamscope/client and sse()'s own frames", () => {
  it('the error event of fail() (no id) reaches the app as an event, with the last id; the stream is not malformed', async () => {
    const opts = { checksum: 'crc32' as const, heartbeatMs: 0, retryMs: 50 };
    let n = 0;
    const srv = await startServer((req, res) => {
      const s = sse(req, res, opts);
      if (n++ > 0) return void s.run(() => new Promise(() => {})); // later connections: open, quiet
      void s.run(async () => {
        await s.send({ id: 'e:1-0', data: 'a' });
        throw Object.assign(new Error('upstream gone'), { code: 'E_UPSTREAM' });
      });
    });
    cleanups.push(() => srv.close());
    const r = record(srv.url);
    await until(() => r.events.length >= 2 && r.client.connections >= 2, 'the event, the error event, a resume');
    expect(r.events[0]).toEqual({ id: 'e:1-0', event: 'message', data: 'a' });
    expect(r.events[1]).toMatchObject({ id: 'e:1-0', event: 'error' });
    expect(JSON.parse(r.events[1]!.data)).toMatchObject({ code: 'E_UPSTREAM' });
    expect(r.errors).toEqual([]);
    expect(r.drops).toEqual([]);
  });
});

describe('streamscope/client: history lost is reported, never passed off as continuity', () => {
  it('416 (an id the store trimmed): onReset with the cursor, then the retained events', async () => {
    const hub = createHub({ store: memoryStore({ maxEvents: 5 }), checksum: 'crc32', heartbeatMs: 0 });
    const { srv } = await serveHub(hub);
    const old = await hub.publish('c', 'old');
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await hub.publish('c', `e${i}`));
    const r = record(`${srv.url}/events`, { lastEventId: old });
    await until(() => r.events.length === 5, 'the retained events');
    expect(r.resets).toEqual([{ reason: 'expired', lastEventId: old, nextCursor: expect.any(String), via: 'status' }]);
    expect(r.events.map((e) => e.id)).toEqual(ids.slice(5));
  });

  it("onExpired: 'reset' (an id of a lost history): onReset from the reset event, which is not delivered as an event", async () => {
    const hub = createHub({ checksum: 'crc32', heartbeatMs: 0, onExpired: 'reset' });
    const { srv } = await serveHub(hub);
    await hub.publish('c', 'x');
    const r = record(`${srv.url}/events`, { lastEventId: 'lost0000:1-0' });
    await until(() => r.resets.length === 1 && hub.subscribers('c') === 1, 'the reset');
    const live = await hub.publish('c', 'live');
    await until(() => r.events.length === 1, 'live');
    expect(r.resets[0]).toMatchObject({ reason: 'unknown', lastEventId: 'lost0000:1-0', via: 'event' });
    expect(r.events.map((e) => [e.id, e.data])).toEqual([[live, 'live']]);
  });
});

describe('streamscope/client: a malformed stream gives one typed error and closes', () => {
  /** A server that answers every request with `body` (and counts the requests). */
  async function fixed(body: string, status = 200, type = 'text/event-stream'): Promise<{ srv: TestServer; hits: number[] }> {
    const hits: number[] = [];
    const srv = await startServer((_req, res) => {
      hits.push(Date.now());
      res.writeHead(status, { 'Content-Type': type });
      res.end(body);
    });
    cleanups.push(() => srv.close());
    return { srv, hits };
  }

  it('events without ids (continuity required): STREAMSCOPE_ERR_MALFORMED_STREAM after one connection', async () => {
    const { srv, hits } = await fixed(encodeEvent({ data: 'no id' }, { checksum: 'crc32' }));
    const r = record(srv.url);
    const err = await r.client.done;
    expect(err?.code).toBe('STREAMSCOPE_ERR_MALFORMED_STREAM');
    expect(err?.message).toMatch(/without an id/);
    expect(r.errors).toHaveLength(1);
    expect(r.events).toEqual([]);
    await new Promise((res) => setTimeout(res, 200));
    expect(hits).toHaveLength(1);
  });

  it('an event over maxEventLength: STREAMSCOPE_ERR_MALFORMED_STREAM after one connection', async () => {
    const { srv, hits } = await fixed(encodeEvent({ id: 'e:1-0', data: 'x'.repeat(5000) }, { checksum: 'crc32' }));
    const r = record(srv.url, { maxEventLength: 1000 });
    const err = await r.client.done;
    expect(err?.code).toBe('STREAMSCOPE_ERR_MALFORMED_STREAM');
    expect(err?.message).toMatch(/maxEventLength/);
    expect(hits).toHaveLength(1);
  });

  it('an event that never ends (one data line streamed on and on): the same error once the parser holds more than maxEventLength', async () => {
    const hits: number[] = [];
    const srv = await startServer((_req, res) => {
      hits.push(Date.now());
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write(': crc32=00000000\nid: e:1-0\ndata: ');
      const t = setInterval(() => res.write('x'.repeat(100)), 2);
      res.on('close', () => clearInterval(t));
    });
    cleanups.push(() => srv.close());
    const r = record(srv.url, { maxEventLength: 1000 });
    const err = await r.client.done;
    expect(err?.code).toBe('STREAMSCOPE_ERR_MALFORMED_STREAM');
    expect(err?.message).toMatch(/maxEventLength/);
    expect(hits).toHaveLength(1);
  });

  it('a non-hex checksum on every connection: one error after two connections, spaced by the server retry', async () => {
    const { srv, hits } = await fixed('retry: 150\n\n: crc32=zzzzzzzz\nid: e:1-0\ndata: x\n\n');
    const r = record(srv.url);
    const err = await r.client.done;
    expect(err?.code).toBe('STREAMSCOPE_ERR_MALFORMED_STREAM');
    expect(r.drops.map((d) => d.reason)).toEqual(['bad-checksum', 'bad-checksum']);
    expect(hits).toHaveLength(2);
    expect(hits[1]! - hits[0]!).toBeGreaterThanOrEqual(145);
    expect(r.events).toEqual([]);
    expect(r.errors).toHaveLength(1);
  });

  it('a stream with no checksums at all (the server was not told checksum: crc32): same, and checksum: none accepts it', async () => {
    const { srv } = await fixed('id: e:1-0\ndata: x\n\n');
    const r = record(srv.url);
    expect((await r.client.done)?.code).toBe('STREAMSCOPE_ERR_MALFORMED_STREAM');
    expect(r.drops.map((d) => d.reason)).toEqual(['missing-checksum', 'missing-checksum']);
    const ok = record(srv.url, { checksum: 'none' });
    await until(() => ok.events.length >= 1, 'accepted');
    expect(ok.events[0]).toEqual({ id: 'e:1-0', event: 'message', data: 'x' });
  });

  it('a 404, or a 200 that is not an event stream: STREAMSCOPE_ERR_STREAM_REFUSED at once', async () => {
    for (const [status, type] of [
      [404, 'text/plain'],
      [200, 'application/json'],
    ] as const) {
      const { srv, hits } = await fixed('nope', status, type);
      const r = record(srv.url);
      expect((await r.client.done)?.code).toBe('STREAMSCOPE_ERR_STREAM_REFUSED');
      expect(hits).toHaveLength(1);
    }
  });

  it('503s are retried with a doubling backoff from retryMs, capped by maxRetryMs: never faster', async () => {
    const { srv, hits } = await fixed('busy', 503, 'application/json');
    const r = record(srv.url, { retryMs: 50, maxRetryMs: 200 });
    await until(() => hits.length >= 6, 'six attempts', 10_000);
    r.client.close();
    const gaps = hits.slice(1).map((t, i) => t - hits[i]!);
    const floor = [50, 100, 200, 200, 200];
    for (const [i, g] of gaps.slice(0, 5).entries()) expect(g, `gap ${i}: ${gaps.join(', ')}`).toBeGreaterThanOrEqual(floor[i]! - 5);
    expect(r.errors).toEqual([]);
  });

  it('a server that answers 416 every time: each is reported, and the resumes back off like any failed connection', async () => {
    const hits: number[] = [];
    const srv = await startServer((_req, res) => {
      hits.push(Date.now());
      const body = JSON.stringify({ error: { code: 'STREAMSCOPE_ERR_EXPIRED_EVENT_ID', message: 'expired', nextCursor: 'e:1-0' } });
      res.writeHead(416, { 'Content-Type': 'application/json', 'X-Next-Cursor': 'e:1-0' });
      res.end(body);
    });
    cleanups.push(() => srv.close());
    const r = record(srv.url, { retryMs: 50, maxRetryMs: 200, lastEventId: 'e:0-5' });
    await until(() => hits.length >= 5, 'five attempts', 10_000);
    r.client.close();
    const gaps = hits.slice(1).map((t, i) => t - hits[i]!);
    const floor = [50, 100, 200, 200];
    for (const [i, g] of gaps.slice(0, 4).entries()) expect(g, `gap ${i}: ${gaps.join(', ')}`).toBeGreaterThanOrEqual(floor[i]! - 5);
    expect(r.resets.length).toBeGreaterThanOrEqual(4);
    expect(r.resets[0]).toEqual({ reason: 'expired', lastEventId: 'e:0-5', nextCursor: 'e:1-0', via: 'status' });
    expect(r.errors).toEqual([]);
  });

  it('bad options throw STREAMSCOPE_ERR_INVALID_OPTION', () => {
    for (const o of [{ checksum: 'md5' }, { continuity: 'strict' }, { retryMs: -1 }, { maxEventLength: Number.NaN }]) {
      expect(() => connect('http://127.0.0.1:1/', { onEvent: () => {}, ...(o as object) }), JSON.stringify(o)).toThrow(
        expect.objectContaining({ code: 'STREAMSCOPE_ERR_INVALID_OPTION' }),
      );
    }
  });
});

describe("the client's id order", () => {
  it('agrees with the server (compareIds) on any two ids of one epoch', () => {
    const num = fc.oneof(fc.bigInt({ min: 0n, max: 18446744073709551615n }).map(String), fc.constantFrom('0', '1', '9', '10'));
    fc.assert(
      fc.property(num, num, num, num, (a, b, c, d) => {
        const x = `ep:${a}-${b}`;
        const y = `ep:${c}-${d}`;
        expect(Math.sign(compareParsed(parseId(x)!, parseId(y)!))).toBe(Math.sign(compareIds(x, y)));
      }),
      { numRuns: 500 },
    );
  });
});


