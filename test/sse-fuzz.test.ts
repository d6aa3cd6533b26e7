import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import fc from 'fast-check';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { compareIds, createHub, encodeEvent, parseEventId, type Hub } from '../src/index.js';
import { predecessor } from '../src/runtime/hub/ids.js';
import { startServer, type TestServer } from './helpers/http.js';
import { hubApp, openSse } from './helpers/sse.js';

/** Property-based: the encoder round-trips through a real SSE parser; no Last-Event-ID crashes anything. */

function decode(text: string, chunks: number[]): EventSourceMessage[] {
  const out: EventSourceMessage[] = [];
  const p = createParser({ onEvent: (e) => out.push(e) });
  // feed in arbitrary pieces, as a socket would deliver them
  let at = 0;
  for (const c of chunks) {
    if (at >= text.length) break;
    p.feed(text.slice(at, at + c));
    at += c;
  }
  if (at < text.length) p.feed(text.slice(at));
  return out;
}

const noBreak = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => !/[\r\n\0]/.test(s));
const anyText = fc.string({ unit: fc.constantFrom('a', ' ', '\n', '\r', '\r\n', ':', 'é', '😀', 'data: x', '\u2028', '\t', 'id: 9'), maxLength: 60 });
const eventArb = fc.record(
  {
    id: noBreak,
    event: noBreak,
    data: fc.oneof(anyText, fc.string({ unit: 'grapheme', maxLength: 80 })),
  },
  { requiredKeys: ['data'] },
);

const U64 = (1n << 64n) - 1n;
const u64 = fc.bigInt({ min: 0n, max: U64 });

describe('SSE encoder (property-based)', () => {
  it('every encoded event decodes back to itself, in any chunking (line breaks in data come back as \\n)', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 17 }), { maxLength: 200 }), (events, chunks) => {
        const text = events.map((e) => encodeEvent(e)).join('');
        const got = decode(text, chunks);
        expect(got.map((g) => ({ id: g.id, event: g.event, data: g.data }))).toEqual(
          events.map((e) => ({
            id: e.id,
            event: e.event === '' ? undefined : e.event,
            data: e.data.replace(/\r\n|\r/g, '\n'),
          })),
        );
      }),
      { numRuns: 1500 },
    );
  });

  it('an id or event type with a line break or NUL is refused, never framed', () => {
    const bad = fc.tuple(fc.string({ maxLength: 10 }), fc.constantFrom('\n', '\r', '\r\n'), fc.string({ maxLength: 10 })).map(([a, b, c]) => a + b + c);
    fc.assert(
      fc.property(bad, fc.boolean(), (s, asId) => {
        expect(() => encodeEvent(asId ? { id: s, data: 'x' } : { event: s, data: 'x' })).toThrow(
          expect.objectContaining({ code: 'STREAMSCOPE_ERR_INVALID_EVENT' }),
        );
      }),
    );
  });
});

describe('Last-Event-ID parser (property-based)', () => {
  it('never throws; returns null or a canonical [<epoch>:]<ms>-<seq>', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 60 }), fc.string({ unit: 'binary', maxLength: 60 }), fc.constantFrom('0-0', '01-002', '-', '1-', '18446744073709551616-0', 'ab12:01-2', ':1-2', 'AB:1-2', 'a:b:1-2', `${'a'.repeat(33)}:1-2`)), (s) => {
        const id = parseEventId(s);
        if (id !== null) {
          expect(id).toMatch(/^([0-9a-z]{1,32}:)?(0|[1-9]\d*)-(0|[1-9]\d*)$/);
          expect(parseEventId(id)).toBe(id);
        }
      }),
      { numRuns: 3000 },
    );
    for (const v of [undefined, null, 42, {}, [], '1'.repeat(10_000)]) expect(parseEventId(v)).toBeNull();
  });

  it('accepts every pair of unsigned 64-bit integers and orders them as numbers do', () => {
    fc.assert(
      fc.property(u64, u64, u64, u64, (a, b, c, d) => {
        const x = parseEventId(`${a}-${b}`);
        const padded = `${c}`.length < 20 ? `0${c}` : `${c}`; // leading zeros are read, up to 20 digits
        const y = parseEventId(`${padded}-${d}`);
        expect(x).toBe(`${a}-${b}`);
        expect(y).toBe(`${c}-${d}`);
        const want = a !== c ? (a < c ? -1 : 1) : b !== d ? (b < d ? -1 : 1) : 0;
        expect(Math.sign(compareIds(x!, y!))).toBe(want);
        // within an epoch the epoch prefix changes nothing (it is kept, not compared)
        expect(parseEventId(`ab12:${padded}-${d}`)).toBe(`ab12:${c}-${d}`);
        expect(Math.sign(compareIds(`ab12:${x}`, `ab12:${y}`))).toBe(want);
        expect(parseEventId(`${a + U64 + 1n}-0`)).toBeNull();
      }),
      { numRuns: 2000 },
    );
  });

  it('predecessor(id) is the greatest id below it', () => {
    fc.assert(
      fc.property(u64, u64, (a, b) => {
        if (a === 0n && b === 0n) return;
        const p = predecessor(`${a}-${b}`);
        const want = b > 0n ? `${a}-${b - 1n}` : `${a - 1n}-${U64}`;
        expect(p).toBe(want);
        expect(predecessor(`e0:${a}-${b}`)).toBe(`e0:${want}`);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('a hub server under arbitrary Last-Event-ID input', () => {
  let hub: Hub;
  let srv: TestServer;
  const ids: string[] = [];
  beforeAll(async () => {
    hub = createHub({ heartbeatMs: 0, timeoutMs: 5000 });
    const app = hubApp(hub);
    srv = await startServer(app.handler);
    for (let i = 0; i < 20; i++) ids.push(await hub.publish('c', String(i)));
  });
  afterAll(async () => {
    await srv.close();
    await hub.close();
  });

  /** Sends raw bytes as the Last-Event-ID header value; returns the status line's code (0: connection closed). */
  function rawRequest(value: Buffer, inQuery: boolean): Promise<number> {
    return new Promise((resolve) => {
      const sock = net.connect({ port: srv.port, host: '127.0.0.1' });
      let buf = '';
      const done = (code: number): void => {
        sock.destroy();
        resolve(code);
      };
      sock.on('data', (c) => {
        buf += c.toString('latin1');
        const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
        if (m) done(Number(m[1]));
      });
      sock.on('error', () => done(0));
      sock.on('close', () => done(0));
      const path = inQuery ? `/events?lastEventId=${encodeURIComponent(value.toString('latin1'))}` : '/events';
      sock.write(
        Buffer.concat([
          Buffer.from(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n`, 'latin1'),
          inQuery ? Buffer.alloc(0) : Buffer.concat([Buffer.from('Last-Event-ID: '), value, Buffer.from('\r\n')]),
          Buffer.from('\r\n'),
        ]),
      );
    });
  }

  it('answers 200, 400 or 416 (or Node refuses the bytes) and keeps serving', async () => {
    const bytes = fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a.filter((b) => b !== 10 && b !== 13)));
    const idLike = fc.tuple(fc.bigInt({ min: 0n, max: U64 * 2n }), fc.bigInt({ min: 0n, max: 5n })).map(([a, b]) => Buffer.from(`${a}-${b}`));
    const seen = new Set<number>();
    await fc.assert(
      fc.asyncProperty(fc.oneof(bytes, idLike, fc.constantFrom(...ids.map((i) => Buffer.from(i)))), fc.boolean(), async (value, inQuery) => {
        const code = await rawRequest(value, inQuery);
        seen.add(code);
        expect([200, 400, 416, 0]).toContain(code);
      }),
      { numRuns: 300 },
    );
    expect(seen.has(200) && seen.has(400) && seen.has(416)).toBe(true);
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': ids[10]! });
    const { until } = await import('./helpers/http.js');
    await until(() => c.events.length === 9, 'replay after the fuzzing');
    c.close();
  });
});
