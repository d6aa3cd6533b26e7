import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { instrument, sse, streams } from '../src/index.js';
import { scrape, sleep, sum, until, type Sample } from './helpers/http.js';
import { h2get, selfSignedCert } from './helpers/h2.js';

// Real HTTP/2 servers and clients over loopback: h2c (createServer) and TLS (createSecureServer, a certificate
// made by openssl for this run). Every number is checked against what the client or the handler saw.

const exporter = new InMemorySpanExporter();
const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer('h2-test');

type Server = http2.Http2Server | http2.Http2SecureServer;
const open: { server: Server; sessions: http2.ClientHttp2Session[] }[] = [];
let tls: { key: Buffer; cert: Buffer };

beforeAll(() => {
  tls = selfSignedCert();
});

afterEach(async () => {
  while (open.length) {
    const o = open.pop()!;
    for (const s of o.sessions) s.destroy();
    await new Promise<void>((r) => o.server.close(() => r()));
  }
});

async function listen(server: Server, secure: boolean): Promise<{ connect(): http2.ClientHttp2Session }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const entry = { server, sessions: [] as http2.ClientHttp2Session[] };
  open.push(entry);
  return {
    connect() {
      const s = secure ? http2.connect(`https://localhost:${port}`, { ca: tls.cert }) : http2.connect(`http://127.0.0.1:${port}`);
      s.on('error', () => undefined);
      entry.sessions.push(s);
      return s;
    },
  };
}

async function settled(registry: Registry, n: number): Promise<Sample[]> {
  await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count') >= n, `${n} closed stream(s)`);
  return scrape(registry);
}

const outcome = (samples: Sample[], o: string): number => sum(samples, 'stream_duration_seconds_count', { outcome: o });

/** A producer that keeps writing after the client left, tallying what it wrote while the stream was alive. */
function producer(write: (chunk: string) => void, alive: () => boolean, tally: { alive: number; aliveWrites: number; after: number }, stop: () => void): void {
  const chunk = 'x'.repeat(100);
  const t = setInterval(() => {
    if (alive()) {
      tally.alive += chunk.length;
      tally.aliveWrites++;
    } else {
      tally.after++;
    }
    write(chunk);
    if (tally.after >= 5) {
      clearInterval(t);
      stop();
    }
  }, 5);
}

for (const secure of [false, true]) {
  const kind = secure ? 'createSecureServer (TLS)' : 'createServer (h2c)';
  const create = (h?: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void): Server =>
    secure ? http2.createSecureServer({ ...tls }, h) : http2.createServer(h);

  describe(`HTTP/2 compatibility API under instrument(), ${kind}`, () => {
    it('a streamed response is completed; bytes and writes are what the client received', async () => {
      const registry = new Registry();
      const server = create(
        instrument(
          async (_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
            res.writeHead(200, { 'content-type': 'application/x-ndjson' });
            for (let i = 0; i < 10; i++) {
              res.write(`{"i":${i}}\n`);
              await sleep(2);
            }
            res.end();
          },
          { registry, route: '/ndjson' },
        ),
      );
      const c = await listen(server, secure);
      const r = await h2get(c.connect(), '/ndjson');
      expect(r.status).toBe(200);
      const m = await settled(registry, 1);
      expect(outcome(m, 'completed')).toBe(1);
      expect(sum(m, 'stream_bytes_written_total', { route: '/ndjson' })).toBe(r.bytes);
      expect(sum(m, 'stream_writes_total')).toBe(10);
      expect(sum(m, 'stream_active_connections')).toBe(0);
      expect(sum(m, 'stream_leaks_total')).toBe(0);
    });

    it("a client's RST_STREAM is client_aborted; bytes stop at the reset, later writes are writes after close", async () => {
      const registry = new Registry();
      const tally = { alive: 0, aliveWrites: 0, after: 0 };
      let done!: () => void;
      const finished = new Promise<void>((r) => (done = r));
      const server = create(
        instrument(
          (_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            producer((c) => res.write(c), () => !res.stream.destroyed, tally, done);
          },
          { registry, route: '/reset' },
        ),
      );
      const c = await listen(server, secure);
      const r = await h2get(c.connect(), '/reset', { resetAfter: 300 });
      expect(r.reset).toBe(true);
      await finished;
      const m = await settled(registry, 1);
      expect(outcome(m, 'client_aborted')).toBe(1);
      expect(outcome(m, 'completed')).toBe(0);
      expect(sum(m, 'stream_bytes_written_total')).toBe(tally.alive);
      expect(sum(m, 'stream_writes_total')).toBe(tally.aliveWrites);
      expect(sum(m, 'stream_writes_after_close_total')).toBe(tally.after);
      expect(r.bytes).toBeLessThanOrEqual(tally.alive);
      await until(async () => sum(await scrape(registry), 'stream_leaks_total', { kind: 'zombie_producer' }) === 1, 'the zombie_producer finding');
    });

    it('res.destroy() by the server is error, not client_aborted', async () => {
      const registry = new Registry();
      const server = create(
        instrument(
          async (_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            res.write('data: 1\n\n');
            await sleep(20);
            res.destroy();
          },
          { registry },
        ),
      );
      const c = await listen(server, secure);
      await h2get(c.connect(), '/cut').catch(() => undefined);
      const m = await settled(registry, 1);
      expect(outcome(m, 'error')).toBe(1);
    });

    it('a stream timeout (res.setTimeout) is timeout, not error or client_aborted', async () => {
      const registry = new Registry();
      const server = create(
        instrument(
          (_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            res.write('data: 1\n\n');
            res.setTimeout(100, () => res.destroy()); // the app cuts an idle stream
          },
          { registry },
        ),
      );
      const c = await listen(server, secure);
      await h2get(c.connect(), '/slow').catch(() => undefined);
      const m = await settled(registry, 1);
      expect(outcome(m, 'timeout')).toBe(1);
    });

    it('backpressure: a client that does not read blocks writes; drain, then completed with every byte', async () => {
      const registry = new Registry();
      let blocked = 0;
      let release!: () => void;
      const hold = new Promise<void>((r) => (release = r));
      const server = create(
        instrument(
          async (_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
            res.writeHead(200, { 'content-type': 'application/octet-stream' });
            const chunk = Buffer.alloc(16 * 1024, 1);
            for (let i = 0; i < 64; i++) {
              if (!res.write(chunk)) {
                blocked++;
                if (blocked === 1) release();
                await new Promise((r) => res.stream.once('drain', r));
              }
            }
            res.end();
          },
          { registry, route: '/bulk' },
        ),
      );
      const c = await listen(server, secure);
      const r = await h2get(c.connect(), '/bulk', { holdUntil: hold.then(() => sleep(50)) });
      expect(r.bytes).toBe(64 * 16 * 1024);
      const m = await settled(registry, 1);
      expect(blocked).toBeGreaterThan(0);
      expect(sum(m, 'write_blocked_total', { route: '/bulk' })).toBe(blocked);
      expect(sum(m, 'stream_write_blocked_seconds_count', { route: '/bulk' })).toBe(blocked);
      expect(sum(m, 'stream_bytes_written_total', { route: '/bulk' })).toBe(r.bytes);
      expect(outcome(m, 'completed')).toBe(1);
    });

    it('sse() over HTTP/2: no Connection header, the client receives every event; a reset is client_aborted and stops send()', async () => {
      const registry = new Registry();
      let rejected: unknown;
      const server = create(async (req, res) => {
        const stream = sse(req as never, res as never, { registry, route: '/sse', heartbeatMs: 0 });
        if (req.url === '/sse/three') {
          for (let i = 0; i < 3; i++) await stream.send({ id: String(i), data: `e${i}` });
          stream.close();
          return;
        }
        try {
          for (let i = 0; ; i++) {
            await stream.send({ data: 'y'.repeat(200) });
            await sleep(2);
          }
        } catch (err) {
          rejected = err;
        }
      });
      const c = await listen(server, secure);
      const session = c.connect();
      const r = await h2get(session, '/sse/three');
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(r.headers.connection).toBeUndefined();
      expect(r.body.toString()).toBe('id: 0\ndata: e0\n\nid: 1\ndata: e1\n\nid: 2\ndata: e2\n\n');
      let m = await settled(registry, 1);
      expect(outcome(m, 'completed')).toBe(1);
      expect(sum(m, 'stream_bytes_written_total')).toBe(r.bytes);

      const r2 = await h2get(session, '/sse/forever', { resetAfter: 1000 });
      expect(r2.reset).toBe(true);
      await until(() => rejected !== undefined, 'send() to reject after the reset');
      expect((rejected as Error).name).toBe('StreamClosedError');
      m = await settled(registry, 2);
      expect(outcome(m, 'client_aborted')).toBe(1);
      expect(sum(m, 'streamscope_internal_errors_total')).toBe(0);
    });
  });

  describe(`sse() backpressure over HTTP/2, ${kind}`, () => {
    it('send() waits for drain while the client does not read (Node 20 has no writableNeedDrain on Http2ServerResponse)', async () => {
      const registry = new Registry();
      const total = 200;
      let sent = 0;
      const server = create(async (req, res) => {
        const stream = sse(req as never, res as never, { registry, route: '/sse-bulk', heartbeatMs: 0 });
        const data = 'b'.repeat(16 * 1024);
        for (let i = 0; i < total; i++) {
          await stream.send({ data });
          sent++;
        }
        stream.close();
      });
      const c = await listen(server, secure);
      let atRelease = -1;
      const hold = sleep(300).then(() => (atRelease = sent));
      const r = await h2get(c.connect(), '/sse-bulk', { holdUntil: hold });
      expect(atRelease).toBeGreaterThanOrEqual(0);
      expect(atRelease).toBeLessThan(total);
      expect(r.body.toString().split('\n\n').length - 1).toBe(total);
      const m = await settled(registry, 1);
      expect(outcome(m, 'completed')).toBe(1);
      expect(sum(m, 'write_blocked_total')).toBeGreaterThan(0);
      expect(sum(m, 'stream_bytes_written_total')).toBe(r.bytes);
    });
  });

  describe(`HTTP/2 stream events under instrument(), ${kind}`, () => {
    it('completed, client reset and server cut: outcomes, bytes, writes, spans and the zombie finding as the client and handler saw them', async () => {
      const registry = new Registry();
      exporter.reset();
      const tally = { alive: 0, aliveWrites: 0, after: 0 };
      let done!: () => void;
      const finished = new Promise<void>((r) => (done = r));
      const server = create();
      server.on(
        'stream',
        instrument(
          async (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
            stream.on('error', () => undefined);
            const path = headers[':path'];
            stream.respond({ ':status': 200, 'content-type': 'text/event-stream' });
            if (path === '/ok') {
              for (let i = 0; i < 5; i++) {
                stream.write(`data: ${i}\n\n`);
                await sleep(2);
              }
              stream.end();
            } else if (path === '/reset') {
              producer((c) => stream.write(c), () => !stream.destroyed, tally, done);
            } else {
              stream.write('data: x\n\n');
              await sleep(20);
              stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
            }
          },
          { registry, tracer },
        ),
      );
      const c = await listen(server, secure);
      const session = c.connect();
      const ok = await h2get(session, '/ok');
      const reset = await h2get(session, '/reset', { resetAfter: 300 });
      await h2get(session, '/cut').catch(() => undefined);
      await finished;
      const m = await settled(registry, 3);
      expect(sum(m, 'stream_started_total')).toBe(3);
      expect(outcome(m, 'completed')).toBe(1);
      expect(outcome(m, 'client_aborted')).toBe(1);
      expect(outcome(m, 'error')).toBe(1);
      expect(sum(m, 'stream_bytes_written_total', { route: '/ok' })).toBe(ok.bytes);
      expect(sum(m, 'stream_bytes_written_total', { route: '/reset' })).toBe(tally.alive);
      expect(sum(m, 'stream_writes_total', { route: '/reset' })).toBe(tally.aliveWrites);
      expect(sum(m, 'stream_writes_after_close_total', { route: '/reset' })).toBe(tally.after);
      expect(reset.bytes).toBeLessThanOrEqual(tally.alive);
      expect(sum(m, 'stream_started_total', { method: 'GET' })).toBe(3);
      expect(streams().filter((s) => !s.clientClosed)).toEqual([]);
      // detectors: the producer that wrote on after the reset is a zombie; the healthy streams raise nothing
      await until(async () => sum(await scrape(registry), 'stream_leaks_total', { kind: 'zombie_producer' }) === 1, 'the zombie_producer finding');
      const after = await scrape(registry);
      expect(sum(after, 'stream_leaks_total', { route: '/reset', kind: 'zombie_producer' })).toBe(1);
      expect(sum(after, 'stream_leaks_total', { route: '/ok' })).toBe(0);
      // spans: one per stream, with the outcome and the bytes counted above
      const spans = exporter.getFinishedSpans();
      const span = (route: string) => spans.find((sp) => sp.attributes['stream.route'] === route);
      expect(span('/ok')?.attributes['stream.outcome']).toBe('completed');
      expect(span('/ok')?.attributes['stream.bytes']).toBe(ok.bytes);
      expect(span('/reset')?.attributes['stream.outcome']).toBe('client_aborted');
      expect(span('/reset')?.attributes['stream.bytes']).toBe(tally.alive);
      expect(span('/cut')?.attributes['stream.outcome']).toBe('error');
    });

    it('backpressure on a stream event: blocked writes counted, every byte delivered', async () => {
      const registry = new Registry();
      let blocked = 0;
      let release!: () => void;
      const hold = new Promise<void>((r) => (release = r));
      const server = create();
      server.on(
        'stream',
        instrument(
          async (stream: http2.ServerHttp2Stream) => {
            stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
            const line = `${JSON.stringify({ pad: 'z'.repeat(16 * 1024) })}\n`;
            for (let i = 0; i < 40; i++) {
              if (!stream.write(line)) {
                blocked++;
                if (blocked === 1) release();
                await new Promise((r) => stream.once('drain', r));
              }
            }
            stream.end();
          },
          { registry, route: '/bulk' },
        ),
      );
      const c = await listen(server, secure);
      const r = await h2get(c.connect(), '/bulk', { holdUntil: hold.then(() => sleep(50)) });
      const m = await settled(registry, 1);
      expect(blocked).toBeGreaterThan(0);
      expect(sum(m, 'write_blocked_total')).toBe(blocked);
      expect(sum(m, 'stream_bytes_written_total')).toBe(r.bytes);
      expect(outcome(m, 'completed')).toBe(1);
    });

    it('sse() refuses a stream event with one clear error', () => {
      const fake = { respond() {}, pushStream() {}, session: {} };
      expect(() => sse(fake as never, fake as never)).toThrow(/HTTP\/2 'stream' events are not supported/);
    });
  });
}
