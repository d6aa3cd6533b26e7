import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { EventSource } from 'eventsource';
import { Redis } from 'ioredis';
import { createParser } from 'eventsource-parser';
import { createHub, encodeEvent, memoryStore, redisStore, sse, type Hub } from '../src/index.js';
import { crc32Portable } from '../src/runtime/sse/wire.js';
import { startServer, until, type TestServer } from './helpers/http.js';
import { hubApp, openSse } from './helpers/sse.js';
import { startRedis, type RedisServer } from './helpers/redis.js';

/**
 * The checksum wire format (docs/sse.md, "Checksums"), checked from the outside: the raw bytes on a real
 * socket, the CRC-32 recomputed with zlib's own crc32 (not the code under test), and stock parsers (the
 * `eventsource` package) reading the same stream unchanged. Then idempotent publish on both stores.
 */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const zcrc = (zlib as unknown as { crc32: (s: string) => number }).crc32;
const hex = (n: number): string => (n >>> 0).toString(16).padStart(8, '0');

/** Every block of a raw SSE body: its checksum comment (if any) and its fields, as sent. */
function blocks(raw: string): Array<{ crc?: string; anchor?: string; id?: string; event?: string; data: string[] }> {
  return raw
    .split('\n\n')
    .filter((b) => b !== '')
    .map((b) => {
      const out: { crc?: string; anchor?: string; id?: string; event?: string; data: string[] } = { data: [] };
      for (const line of b.split('\n')) {
        const m = /^([^:]*): ?(.*)$/.exec(line)!;
        if (m[1] === '' && m[2]!.startsWith('crc32=')) out.crc = m[2]!.slice(6);
        else if (m[1] === '' && m[2]!.startsWith('anchor=')) out.anchor = m[2]!.slice(7);
        else if (m[1] === 'id') out.id = m[2];
        else if (m[1] === 'event') out.event = m[2];
        else if (m[1] === 'data') out.data.push(m[2]!);
      }
      return out;
    });
}

const EVENTS = [
  { id: '1', event: 'tick', data: 'plain' },
  { id: '2', data: { json: true, text: 'naïve 漢字 🎉' } },
  { data: 'two\r\nlines\rand\nmore' },
  { id: '3', event: 'x', data: '' },
  { id: '4', data: ' leading space' },
];

describe("sse({ checksum: 'crc32' }): the wire format", () => {
  it('each event begins with `: crc32=<8 hex>` in its own block; the CRC-32 (zlib) covers `<id>\\n<event>\\n<data as read back>`', async () => {
    const opts = { checksum: 'crc32' as const, heartbeatMs: 0, retryMs: 50 };
    const srv: TestServer = await startServer((req, res) => {
      const s = sse(req, res, opts);
      void s.run(async () => {
        for (const ev of EVENTS) await s.send(ev);
        s.comment('a comment is not an event');
      });
    });
    cleanups.push(() => srv.close());
    const c = await openSse(srv.url);
    await c.ended;
    const evs = blocks(c.raw).filter((b) => b.data.length > 0);
    expect(evs).toHaveLength(EVENTS.length);
    for (const [i, b] of evs.entries()) {
      const data = b.data.join('\n');
      expect(b.crc, `event ${i}`).toMatch(/^[0-9a-f]{8}$/);
      expect(b.crc).toBe(hex(zcrc(`${b.id ?? ''}\n${b.event ?? ''}\n${data}`)));
    }
    // the comment line is the block's first line: it travels with the event it covers
    expect(c.raw).toMatch(/^retry: 50\n\n: crc32=[0-9a-f]{8}\nevent: tick\nid: 1\ndata: plain\n\n/);
    // a stock parser (eventsource-parser, as in the `eventsource` package) reads the same events and data
    expect(c.events.map((e) => e.data)).toEqual(['plain', JSON.stringify(EVENTS[1]!.data), 'two\nlines\nand\nmore', '', ' leading space']);
    // the retry frame, comments and heartbeats carry no checksum
    expect(c.comments.filter((t) => !t.startsWith('crc32='))).toEqual(['a comment is not an event']);
  });

  it('without the option nothing changes: no checksum line', async () => {
    const srv: TestServer = await startServer((req, res) => {
      const s = sse(req, res, { heartbeatMs: 0 });
      void s.run(() => s.send({ id: '1', data: 'x' }));
    });
    cleanups.push(() => srv.close());
    const c = await openSse(srv.url);
    await c.ended;
    expect(c.raw).toBe('id: 1\ndata: x\n\n');
  });

  it('the `eventsource` npm client (a stock EventSource) gets every event of a checksummed hub stream unchanged', async () => {
    const hub = createHub({ checksum: 'crc32', heartbeatMs: 0 });
    const srv = await startServer(hubApp(hub).handler);
    cleanups.push(() => srv.close(), () => hub.close());
    const datas = ['a', 'b\nc', JSON.stringify({ k: 'ü' }), ''];
    const got: string[] = [];
    const es = new EventSource(`${srv.url}/events?lastEventId=0-0`);
    cleanups.push(() => es.close());
    es.addEventListener('message', (e) => got.push((e as MessageEvent).data as string));
    await until(() => hub.subscribers('c') === 1, 'subscribed');
    for (const d of datas) await hub.publish('c', d);
    await until(() => got.length === datas.length, 'every event');
    expect(got).toEqual(datas);
  });

  it('the portable CRC-32 (the `crc` package over UTF-8, used by the client and on Node < 20.15) equals zlib.crc32 on any text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        expect(crc32Portable(s)).toBe(zcrc(s) >>> 0);
      }),
      { numRuns: 500 },
    );
  });

  it('property: any event, encoded with its checksum and read in any chunking by eventsource-parser, decodes to the plain event, and its comment matches the CRC (zlib) of what was decoded', () => {
    const noBreak = fc.string({ unit: 'grapheme', maxLength: 20 }).filter((t) => !/[\r\n\0]/.test(t));
    const text = fc.string({ unit: fc.constantFrom('a', ' ', '\n', '\r', '\r\n', ':', 'é', '😀', 'data: x', ': crc32=00000000', '\t'), maxLength: 40 });
    const ev = fc.record({ id: noBreak, event: noBreak, data: fc.oneof(text, fc.string({ unit: 'grapheme', maxLength: 60 })) }, { requiredKeys: ['data'] });
    fc.assert(
      fc.property(fc.array(ev, { minLength: 1, maxLength: 6 }), fc.array(fc.integer({ min: 1, max: 13 }), { maxLength: 100 }), (events, chunks) => {
        const wire = events.map((e) => encodeEvent(e, { checksum: 'crc32' })).join('');
        const got: Array<{ crc: string | null; id?: string; event?: string; data: string }> = [];
        let pending: string | null = null;
        const p = createParser({
          onComment: (c) => {
            if (c.startsWith('crc32=')) pending = c.slice(6);
          },
          onEvent: (e) => {
            got.push({ crc: pending, id: e.id, event: e.event, data: e.data });
            pending = null;
          },
        });
        let at = 0;
        for (const n of chunks) {
          p.feed(wire.slice(at, at + n));
          at += n;
        }
        p.feed(wire.slice(at));
        expect(got.map(({ id, event, data }) => ({ id, event, data }))).toEqual(
          events.map((e) => ({ id: e.id, event: e.event === '' ? undefined : e.event, data: e.data.replace(/\r\n|\r/g, '\n') })),
        );
        for (const g of got) expect(g.crc).toBe(hex(zcrc(`${g.id ?? ''}\n${g.event ?? ''}\n${g.data}`)));
      }),
      { numRuns: 800 },
    );
  });

  it('an unknown checksum value throws STREAMSCOPE_ERR_INVALID_OPTION at setup: sse(), createHub(), hub.subscribe() options', async () => {
    for (const bad of ['crc64', 'CRC32', true, 32, null]) {
      expect(() => createHub({ checksum: bad as never }), String(bad)).toThrow(expect.objectContaining({ code: 'STREAMSCOPE_ERR_INVALID_OPTION', message: expect.stringMatching(/checksum/) }));
    }
    let thrown: unknown;
    const srv = await startServer((req, res) => {
      try {
        sse(req, res, { checksum: 'md5' as never });
      } catch (err) {
        thrown = err;
      }
      res.end();
    });
    cleanups.push(() => srv.close());
    await new Promise<void>((r) => http.get(srv.url, (res) => res.resume().on('end', r)));
    expect(thrown).toMatchObject({ code: 'STREAMSCOPE_ERR_INVALID_OPTION' });
    const hub = createHub();
    cleanups.push(() => hub.close());
    const sub = await startServer((req, res) => {
      hub.subscribe(req, res, 'c', { checksum: 'sha1' as never }).then(
        () => res.end(),
        (err: unknown) => {
          thrown = err;
          res.end();
        },
      );
    });
    cleanups.push(() => sub.close());
    thrown = undefined;
    await new Promise<void>((r) => http.get(sub.url, (res) => res.resume().on('end', r)));
    expect(thrown).toMatchObject({ code: 'STREAMSCOPE_ERR_INVALID_OPTION' });
  });

  it('hub: replayed, live and reset frames carry checksums; the anchor names its id in a comment', async () => {
    const hub = createHub({ checksum: 'crc32', heartbeatMs: 0, onExpired: 'reset' });
    const srv = await startServer(hubApp(hub).handler);
    cleanups.push(() => srv.close(), () => hub.close());
    const before = await hub.publish('c', { event: 'm', data: 'replayed' });
    const first = await openSse(`${srv.url}/events`);
    await until(() => first.raw.includes('\n\n'), 'the anchor');
    expect(first.raw).toBe(`: anchor=${before}\nid: ${before}\n\n`);
    first.close();
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': '0-0' });
    await until(() => hub.subscribers('c') >= 1 && c.events.length === 1, 'the replay');
    await hub.publish('c', 'live');
    await until(() => c.events.length === 2, 'live');
    const r = await openSse(`${srv.url}/events`, { 'Last-Event-ID': 'gone0000:1-0' });
    await until(() => r.events.length === 1, 'the reset event');
    for (const raw of [c.raw, r.raw]) {
      const evs = blocks(raw).filter((b) => b.data.length > 0);
      expect(evs.length).toBeGreaterThan(0);
      for (const b of evs) expect(b.crc).toBe(hex(zcrc(`${b.id ?? ''}\n${b.event ?? ''}\n${b.data.join('\n')}`)));
    }
    expect(r.events[0]!.event).toBe('reset');
    c.close();
    r.close();
  });
});

describe('hub: checksum per subscribe()', () => {
  it('a plain and a checksummed subscriber of one channel on one instance: each gets its own form of the same events', async () => {
    const hub = createHub({ heartbeatMs: 0 });
    const crc = { checksum: 'crc32' as const };
    const srv = await startServer((req, res) => {
      void hub.subscribe(req, res, 'c', req.url?.includes('crc') ? crc : undefined);
    });
    cleanups.push(() => srv.close(), () => hub.close());
    const plain = await openSse(`${srv.url}/?lastEventId=0-0`);
    const checked = await openSse(`${srv.url}/crc?lastEventId=0-0`);
    await until(() => hub.subscribers('c') === 2, 'both subscribed');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await hub.publish('c', `e${i}`));
    await until(() => plain.events.length === 3 && checked.events.length === 3, 'live events');
    expect(plain.raw).not.toMatch(/crc32=/);
    expect(plain.events.map((e) => e.id)).toEqual(ids);
    expect(checked.events.map((e) => e.id)).toEqual(ids);
    const evs = blocks(checked.raw).filter((b) => b.data.length > 0);
    expect(evs.map((b) => b.crc)).toEqual(ids.map((id, i) => hex(zcrc(`${id}\n\ne${i}`))));
    plain.close();
    checked.close();
  });
});

describe('hub.publish(channel, event, { key }): at most once per key within the window', () => {
  it('memoryStore: a retried publish answers the first id and stores nothing; another key, or the same key after keyWindowMs, stores', async () => {
    const hub = createHub({ store: memoryStore({ keyWindowMs: 300 }), heartbeatMs: 0 });
    cleanups.push(() => hub.close());
    const a = await hub.publish('c', 'one', { key: 'k1' });
    expect(await hub.publish('c', 'one again', { key: 'k1' })).toBe(a);
    await hub.publish('other', 'same key, other channel', { key: 'k1' });
    expect((await hub.store.range('other', '0-0', 100)).events.map((e) => e.data)).toEqual(['same key, other channel']);
    const b = await hub.publish('c', 'two', { key: 'k2' });
    expect(b).not.toBe(a);
    const info = await hub.store.info('c');
    const page = await hub.store.range('c', '0-0', 100);
    expect(page.events.map((e) => e.data)).toEqual(['one', 'two']);
    expect(info.last).toBe(b);
    await new Promise((r) => setTimeout(r, 350));
    const c = await hub.publish('c', 'one, later', { key: 'k1' });
    expect(c).not.toBe(a);
    expect((await hub.store.range('c', '0-0', 100)).events).toHaveLength(3);
  });

  it('a bad key, or a key with a store that cannot honour it, throws STREAMSCOPE_ERR_INVALID_OPTION', async () => {
    const hub = createHub();
    cleanups.push(() => hub.close());
    for (const key of ['', 'a\0b', 'x'.repeat(257), 42]) {
      await expect(hub.publish('c', 'x', { key: key as never })).rejects.toMatchObject({ code: 'STREAMSCOPE_ERR_INVALID_OPTION' });
    }
    const mem = memoryStore();
    const plain = createHub({
      store: { kind: 'custom', append: mem.append.bind(mem), range: mem.range.bind(mem), info: mem.info.bind(mem), follow: mem.follow.bind(mem), close: mem.close.bind(mem) },
    });
    cleanups.push(() => plain.close());
    await expect(plain.publish('c', 'x', { key: 'k' })).rejects.toMatchObject({ code: 'STREAMSCOPE_ERR_INVALID_OPTION' });
    expect(() => memoryStore({ keyWindowMs: 0 })).toThrow(expect.objectContaining({ code: 'STREAMSCOPE_ERR_INVALID_OPTION' }));
  });

  describe('redisStore (a real redis-server)', () => {
    let redis: RedisServer;
    let admin: Redis;
    beforeAll(async () => {
      redis = await startRedis();
      admin = new Redis(redis.url);
    });
    afterAll(async () => {
      admin?.disconnect();
      await redis?.stop();
    });

    it('concurrent publishes with one key from two instances store one entry (one script with the XADD) and all answer its id', async () => {
      const hubs: Hub[] = [0, 1].map(() => createHub({ store: redisStore({ url: redis.url, keyPrefix: 'idem:' }) }));
      for (const h of hubs) cleanups.push(() => h.close());
      const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => hubs[i % 2]!.publish('c', `try ${i}`, { key: 'order-17' })));
      expect(new Set(ids).size).toBe(1);
      expect(await admin.xlen('idem:c')).toBe(1);
      const other = await hubs[0]!.publish('c', 'another', { key: 'order-18' });
      expect(other).not.toBe(ids[0]);
      expect(await admin.xlen('idem:c')).toBe(2);
      // the key's entry expires with the window (PX), and then the key stores again
      const ttl = await admin.pttl('idem:\0k\0c\0order-17');
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(600_000);
    });

    it('keyWindowMs: after it, the same key stores again', async () => {
      const hub = createHub({ store: redisStore({ url: redis.url, keyPrefix: 'idem2:', keyWindowMs: 200 }) });
      cleanups.push(() => hub.close());
      const a = await hub.publish('c', 'x', { key: 'k' });
      expect(await hub.publish('c', 'x', { key: 'k' })).toBe(a);
      await until(async () => (await admin.exists('idem2:\0k\0c\0k')) === 0, 'the key expired', 5000);
      expect(await hub.publish('c', 'x', { key: 'k' })).not.toBe(a);
      expect(await admin.xlen('idem2:c')).toBe(2);
    });
  });
});
