import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Registry } from 'prom-client';
import { scrape, sleep, sum, until } from './helpers/http.js';
import { selfSignedCert } from './helpers/h2.js';

/**
 * Issue 20 item 6: stall detection on HTTP/2 is per stream, not per connection. Every stream of a session
 * shares one socket; its progress (the handle's counters, the kernel's send queue by inode) moves when any
 * stream progresses, so a stream whose client never reads it was never found while a second stream of the same
 * session was being read (4.5 s at stallAfterMs 1500: no finding). A stream's progress is now its own: the bytes
 * its flow control let out. Real node:http2 clients over loopback, h2c and TLS, through the built package.
 */

const dist = resolve('dist/esm/index.js');
type Lib = typeof import('../src/index.js');
let ss: Lib;
let tls: { key: Buffer; cert: Buffer };
beforeAll(async () => {
  if (!existsSync(dist)) throw new Error('dist/esm/index.js is missing: run `npm run build` first');
  ss = (await import(dist)) as Lib;
  tls = selfSignedCert();
});

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

const STALL = 1500;

/** A producer that honours backpressure on an HTTP/2 response: 16 KiB chunks until write() says stop, then drain. */
function pump(res: http2.Http2ServerResponse): Promise<void> {
  const chunk = Buffer.alloc(16 * 1024, 120);
  const go = (): void => {
    while (!res.stream.destroyed && res.write(chunk));
    if (!res.stream.destroyed) res.stream.once('drain', go);
  };
  go();
  return new Promise((r) => res.stream.once('close', () => r()));
}

/** A server under instrument() (compatibility API), one route per path; and a client session to it. */
async function serve(secure: boolean, route: string, registry: Registry): Promise<http2.ClientHttp2Session> {
  const handler = ss.instrument((_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    return pump(res);
  }, { registry, route: (req: http.IncomingMessage) => `${route}${req.url}`, stallAfterMs: STALL });
  const server = secure ? http2.createSecureServer({ ...tls }, (req, res) => void handler(req, res)) : http2.createServer((req, res) => void handler(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const session = secure ? http2.connect(`https://localhost:${port}`, { ca: tls.cert }) : http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  cleanup.push(() => new Promise<void>((r) => (session.destroy(), server.close(() => r()))));
  return session;
}

/** A stream of `session` that never reads: its stream window fills, the server's writes to it block. */
function paused(session: http2.ClientHttp2Session, path: string): void {
  const req = session.request({ ':path': path });
  req.on('error', () => undefined);
  req.pause();
  req.end();
}

/** A stream of `session` read at about `perTick` bytes every `tickMs` (~110 KB/s with the defaults). */
function reading(session: http2.ClientHttp2Session, path: string, perTick = 16 * 1024, tickMs = 150): { got(): number } {
  const req = session.request({ ':path': path });
  req.on('error', () => undefined);
  let got = 0;
  let allowance = 0;
  req.on('data', (c: Buffer) => {
    got += c.length;
    allowance -= c.length;
    if (allowance <= 0) req.pause();
  });
  req.pause();
  const t = setInterval(() => {
    allowance += perTick;
    if (allowance > 0) req.resume();
  }, tickMs);
  cleanup.push(() => clearInterval(t));
  req.end();
  return { got: () => got };
}

function collect(route: string): Array<{ kind: string; detail: string; route: string }> {
  const seen: Array<{ kind: string; detail: string; route: string }> = [];
  cleanup.push(ss.onFinding((f) => f.route.startsWith(`${route}/`) && seen.push(f)));
  return seen;
}

for (const secure of [false, true]) {
  const kind = secure ? 'TLS' : 'h2c';
  describe(`HTTP/2 stall detection is per stream (${kind}, stallAfterMs ${STALL})`, () => {
    it('a stream whose client never reads is found while a second stream of the same session is read; the read one is not', async () => {
      const route = `/h2-mixed-${kind}`;
      const registry = new Registry();
      const seen = collect(route);
      const session = await serve(secure, route, registry);
      const reader = reading(session, '/read');
      paused(session, '/stuck');
      const t0 = Date.now();
      await until(() => seen.length > 0, 'a stalled_write for the stream nobody reads', STALL + 10_000);
      const f = seen[0]!;
      expect(f.route).toBe(`${route}/stuck`);
      expect(f.kind).toBe('stalled_write');
      const waited = Number(/waited (\d+) ms for drain/.exec(f.detail)![1]);
      expect(waited).toBeGreaterThanOrEqual(STALL); // more than STALL, printed rounded to the ms (1500.3 reads 1500)
      expect(waited).toBeLessThanOrEqual(STALL + 1000);
      expect(f.detail).toContain("(the HTTP/2 stream's flow control)");
      expect(f.detail).toMatch(/the client read 0 B\/s over the last \d+\.\d s/);
      // the read stream goes on for two thresholds more: never flagged, and it kept reading
      const got0 = reader.got();
      await sleep(2 * STALL);
      expect(seen.map((x) => x.route)).toEqual([`${route}/stuck`]);
      expect(reader.got() - got0).toBeGreaterThan(50_000);
      expect(sum(await scrape(registry), 'stream_stalled', { route: `${route}/read` })).toBe(0);
      expect(sum(await scrape(registry), 'stream_stalled', { route: `${route}/stuck` })).toBe(1);
      expect(Date.now() - t0).toBeGreaterThan(STALL);
    });

    it('two streams of one session both read: no finding, while their writes block', async () => {
      const route = `/h2-healthy-${kind}`;
      const registry = new Registry();
      const seen = collect(route);
      const session = await serve(secure, route, registry);
      const a = reading(session, '/a');
      const b = reading(session, '/b');
      const t0 = Date.now();
      while (Date.now() - t0 < 3 * STALL) {
        await sleep(250);
        expect(sum(await scrape(registry), 'stream_stalled')).toBe(0);
      }
      expect(seen).toEqual([]);
      const secs = (Date.now() - t0) / 1000;
      for (const r of [a, b]) expect(r.got() / secs).toBeGreaterThan(50_000);
      // the producers met backpressure all along (the clients read slower than they write)
      const m = await scrape(registry);
      expect(sum(m, 'write_blocked_total', { route: `${route}/a` })).toBeGreaterThan(5);
      expect(sum(m, 'write_blocked_total', { route: `${route}/b` })).toBeGreaterThan(5);
    });
  });
}

describe(`HTTP/2 stall detection is per stream on 'stream' events (h2c, stallAfterMs ${STALL})`, () => {
  it('a stream whose client never reads is found while a second stream of the same session is read; the read one is not', async () => {
    const route = '/h2-events';
    const registry = new Registry();
    const seen = collect(route);
    const server = http2.createServer();
    server.on(
      'stream',
      ss.instrument(
        (stream: http2.ServerHttp2Stream) => {
          stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
          const chunk = Buffer.alloc(16 * 1024, 120);
          const go = (): void => {
            while (!stream.destroyed && stream.write(chunk));
            if (!stream.destroyed) stream.once('drain', go);
          };
          go();
          return new Promise<void>((r) => stream.once('close', () => r()));
        },
        { registry, route: (req: http.IncomingMessage) => `${route}${req.url}`, stallAfterMs: STALL },
      ),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    session.on('error', () => undefined);
    cleanup.push(() => new Promise<void>((r) => (session.destroy(), server.close(() => r()))));
    const reader = reading(session, '/read');
    paused(session, '/stuck');
    await until(() => seen.length > 0, 'a stalled_write for the stream nobody reads', STALL + 10_000);
    expect(seen[0]!.route).toBe(`${route}/stuck`);
    const waited = Number(/waited (\d+) ms for drain/.exec(seen[0]!.detail)![1]);
    expect(waited).toBeGreaterThanOrEqual(STALL); // more than STALL, printed rounded to the ms
    expect(waited).toBeLessThanOrEqual(STALL + 1000);
    const got0 = reader.got();
    await sleep(2 * STALL);
    expect(seen.map((x) => x.route)).toEqual([`${route}/stuck`]);
    expect(reader.got() - got0).toBeGreaterThan(50_000);
  });
});
