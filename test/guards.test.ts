import { describe, expect, it } from 'vitest';
import http from 'node:http';
import { Readable } from 'node:stream';
import { Registry } from 'prom-client';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { instrument, onFinding, StreamClosedError, StreamscopeError, type Finding, type InstrumentOptions } from '../src/index.js';
import { streamscope } from '../src/adapters/express.js';
import { streamscopeKoa } from '../src/adapters/koa.js';
import { streamscopeFastify } from '../src/adapters/fastify.js';
import Fastify from 'fastify';
import Koa from 'koa';
import type { AddressInfo } from 'node:net';
import { guardOptionsFromEnv, resolveGuards } from '../src/consumers/guards.js';
import { get, getAndAbort, neverReadingClient, scrape, sleep, sum, until } from './helpers/http.js';
import { testScope } from './helpers/scope.js';

const STALL = 300;
const DANGLE = 500;
const { cleanup, serve, collect } = testScope();

function drainOrClose(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done).off('close', done);
      resolve();
    };
    res.on('drain', done).on('close', done);
  });
}

const ALL_GUARDS: InstrumentOptions = { maxBufferedBytes: 4 * 1024 * 1024, stalledAction: 'destroy', zombieAction: 'throw', deadPeerMs: 1000 };

describe('guard options', () => {
  it('are off by default and validated at setup with STREAMSCOPE_ERR_INVALID_OPTION', () => {
    expect(resolveGuards({})).toBeNull();
    expect(resolveGuards({ stalledAction: 'none', zombieAction: 'none', maxBufferedBytes: 0 })).toBeNull();
    const bad: InstrumentOptions[] = [
      { maxBufferedBytes: -1 },
      { maxBufferedBytes: Number.NaN },
      { maxBufferedBytes: '1mb' as unknown as number },
      { stalledAction: 'kill' as 'destroy' },
      { zombieAction: true as unknown as 'throw' },
      { deadPeerMs: 10 },
    ];
    const h = (_req: http.IncomingMessage, res: http.ServerResponse): void => void res.end();
    for (const o of bad) {
      for (const setup of [() => instrument(h, o), () => streamscope(o), () => streamscopeKoa(o)]) {
        let err: unknown;
        try {
          setup();
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(StreamscopeError);
        expect((err as StreamscopeError).code).toBe('STREAMSCOPE_ERR_INVALID_OPTION');
      }
    }
  });

  it('STREAMSCOPE_GUARD_* variables: parsed, and a bad value is one line that leaves that guard off', () => {
    const ok = guardOptionsFromEnv({
      STREAMSCOPE_GUARD_MAX_BUFFERED_BYTES: '1048576',
      STREAMSCOPE_GUARD_STALLED_ACTION: 'destroy',
      STREAMSCOPE_GUARD_ZOMBIE_ACTION: 'throw',
      STREAMSCOPE_GUARD_DEAD_PEER_MS: '30000',
    });
    expect(ok).toEqual({ options: { maxBufferedBytes: 1048576, stalledAction: 'destroy', zombieAction: 'throw', deadPeerMs: 30000 }, errors: [] });
    const bad = guardOptionsFromEnv({ STREAMSCOPE_GUARD_MAX_BUFFERED_BYTES: '1MB', STREAMSCOPE_GUARD_ZOMBIE_ACTION: 'throw' });
    expect(bad.options).toEqual({ zombieAction: 'throw' });
    expect(bad.errors).toHaveLength(1);
    expect(bad.errors[0]).toMatch(/^streamscope: STREAMSCOPE_GUARD_MAX_BUFFERED_BYTES="1MB" is invalid .*that guard is off$/);
  });
});

describe('maxBufferedBytes', () => {
  const CAP = 512 * 1024;
  const CHUNK = 16 * 1024;

  /** A producer that ignores write()'s return value, writing into a client that never reads. */
  async function run(guard: boolean): Promise<{ maxQueued: number; closed: boolean; registry: Registry; seen: Finding[]; spans: InMemorySpanExporter }> {
    const registry = new Registry();
    const spans = new InMemorySpanExporter();
    const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }).getTracer('t');
    const route = guard ? '/cap-on' : '/cap-off';
    const seen = collect(route);
    let maxQueued = 0;
    let closed = false;
    let written = 0;
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          const t = setInterval(() => {
            for (let i = 0; i < 8 && !closed; i++) {
              if (written >= 24 * 1024 * 1024) return clearInterval(t);
              res.write(`data: ${String(written).padEnd(CHUNK - 8, '.')}\n\n`); // return value ignored, as in the bug reports
              written += CHUNK;
              if (!res.destroyed) maxQueued = Math.max(maxQueued, res.writableLength);
            }
          }, 1);
          // the broadcaster drops a client when its response closes, as the dashboards in the bug reports did
          res.on('close', () => {
            closed = true;
            clearInterval(t);
          });
          cleanup.push(() => clearInterval(t));
        },
        { registry, route, tracer, danglingAfterMs: DANGLE, ...(guard ? { maxBufferedBytes: CAP } : {}) },
      ),
    );
    const sock = await neverReadingClient(srv.port, route);
    cleanup.push(() => sock.destroy());
    await until(() => written >= 24 * 1024 * 1024 || closed, 'the producer to write 24 MiB or the stream to be cut', 30_000);
    return { maxQueued, closed, registry, seen, spans };
  }

  it('cuts a response whose queue exceeds the cap: outcome error, counted, a finding, on the span', async () => {
    const r = await run(true);
    await until(() => r.closed, 'the stream to be cut');
    // the queue never grew past the cap by more than the write that crossed it
    expect(r.maxQueued).toBeLessThanOrEqual(CAP + CHUNK);
    const samples = await scrape(r.registry);
    expect(sum(samples, 'stream_guard_actions_total', { route: '/cap-on', guard: 'max_buffered_bytes' })).toBe(1);
    expect(sum(samples, 'stream_guard_actions_total', { route: '/cap-on', guard: 'stalled_action' })).toBe(0);
    expect(sum(samples, 'stream_duration_seconds_count', { route: '/cap-on', outcome: 'error' })).toBe(1);
    expect(sum(samples, 'stream_leaks_total', { route: '/cap-on' })).toBe(0);
    expect(r.seen.map((f) => f.kind)).toEqual(['guard_action']);
    expect(r.seen[0]!.detail).toMatch(/^guard max_buffered_bytes: .* exceeds maxBufferedBytes 512\.0 KiB/);
    await until(() => r.spans.getFinishedSpans().length === 1, 'the span to end');
    const span = r.spans.getFinishedSpans()[0]!;
    expect(span.attributes['stream.guard']).toBe('max_buffered_bytes');
    expect(span.attributes['stream.outcome']).toBe('error');
    expect(span.events.find((e) => e.name === 'stream.finding')?.attributes?.['finding.kind']).toBe('guard_action');
  });

  it('without the guard the same producer queues without bound (the 39-hour pattern)', async () => {
    const r = await run(false);
    expect(r.closed).toBe(false);
    expect(r.maxQueued).toBeGreaterThan(16 * 1024 * 1024);
    expect(sum(await scrape(r.registry), 'stream_guard_actions_total')).toBe(0);
  });
});

describe('guards through the Fastify and Koa adapters', () => {
  /** Writes 32 KiB every millisecond into the raw response, ignoring write()'s return value, until it closes. */
  function flood(res: http.ServerResponse): Promise<void> {
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
    const chunk = Buffer.alloc(32 * 1024, 120);
    return new Promise((resolve) => {
      const t = setInterval(() => res.write(chunk), 1);
      res.on('close', () => {
        clearInterval(t);
        resolve();
      });
    });
  }

  it('Fastify: maxBufferedBytes given to the plugin cuts the flood', async () => {
    const registry = new Registry();
    const app = Fastify();
    await app.register(streamscopeFastify, { registry, maxBufferedBytes: 256 * 1024 });
    app.get('/fastify-flood', async (_request, reply) => {
      reply.hijack();
      await flood(reply.raw);
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanup.push(() => app.close());
    const sock = await neverReadingClient((app.server.address() as AddressInfo).port, '/fastify-flood');
    cleanup.push(() => sock.destroy());
    await until(async () => sum(await scrape(registry), 'stream_guard_actions_total', { route: '/fastify-flood', guard: 'max_buffered_bytes' }) === 1, 'the cut');
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route: '/fastify-flood', outcome: 'error' }) === 1, 'outcome error');
  });

  it('Fastify: a bad guard option fails the plugin registration', async () => {
    const app = Fastify();
    await expect(app.register(streamscopeFastify, { zombieAction: 'explode' as 'throw' })).rejects.toMatchObject({ code: 'STREAMSCOPE_ERR_INVALID_OPTION' });
  });

  it('Koa: maxBufferedBytes given to the middleware cuts the flood', async () => {
    const registry = new Registry();
    const app = new Koa();
    app.use(streamscopeKoa({ registry, route: '/koa-flood', maxBufferedBytes: 256 * 1024 }));
    app.use(async (ctx) => {
      ctx.respond = false;
      await flood(ctx.res);
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
    const sock = await neverReadingClient((server.address() as AddressInfo).port, '/koa-flood');
    cleanup.push(() => sock.destroy());
    await until(async () => sum(await scrape(registry), 'stream_guard_actions_total', { route: '/koa-flood', guard: 'max_buffered_bytes' }) === 1, 'the cut');
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route: '/koa-flood', outcome: 'error' }) === 1, 'outcome error');
  });
});

describe('zombieAction', () => {
  async function run(guard: boolean): Promise<{ outcome: unknown; writesAfter: number; registry: Registry }> {
    const registry = new Registry();
    let outcome: unknown = 'pending';
    let writesAfter = 0;
    const route = guard ? '/zombie-on' : '/zombie-off';
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          try {
            // the producer never looks at res: it stops only if write() throws
            for (let i = 0; i < 100; i++) {
              if (res.destroyed) writesAfter++;
              res.write(`data: ${i}\n\n`);
              await sleep(10);
            }
            outcome = 'ran to the end';
          } catch (err) {
            outcome = err;
          }
        },
        { registry, route, danglingAfterMs: 60_000, ...(guard ? { zombieAction: 'throw' as const } : {}) },
      ),
    );
    await getAndAbort(srv.url + route, 20);
    await until(() => outcome !== 'pending', 'the producer to stop', 10_000);
    return { outcome, writesAfter, registry };
  }

  it("'throw': the first write after the client left throws StreamClosedError, counted once", async () => {
    const r = await run(true);
    expect(r.outcome).toBeInstanceOf(StreamClosedError);
    expect((r.outcome as StreamClosedError).code).toBe('STREAMSCOPE_ERR_STREAM_CLOSED');
    expect(r.writesAfter).toBe(1);
    const samples = await scrape(r.registry);
    expect(sum(samples, 'stream_guard_actions_total', { route: '/zombie-on', guard: 'zombie_action' })).toBe(1);
    expect(sum(samples, 'stream_writes_after_close_total', { route: '/zombie-on' })).toBe(1);
    expect(sum(samples, 'stream_leaks_total', { route: '/zombie-on', kind: 'zombie_producer' })).toBe(0);
  });

  it("'throw' never lands inside pipe(): a piped stream whose client leaves ends quietly", async () => {
    const registry = new Registry();
    const errors: unknown[] = [];
    const onUncaught = (err: unknown): void => void errors.push(err);
    process.on('uncaughtException', onUncaught);
    cleanup.push(() => process.off('uncaughtException', onUncaught));
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
          async function* rows(): AsyncGenerator<string> {
            for (let i = 0; ; i++) {
              yield `${JSON.stringify({ i, pad: 'x'.repeat(512) })}\n`;
              if (i % 50 === 0) await sleep(1);
            }
          }
          const src = Readable.from(rows());
          src.pipe(res);
          res.on('close', () => src.destroy());
        },
        { registry, route: '/piped', zombieAction: 'throw' },
      ),
    );
    await Promise.all([getAndAbort(srv.url + '/piped', 64 * 1024), getAndAbort(srv.url + '/piped', 1), getAndAbort(srv.url + '/piped', 256 * 1024)]);
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route: '/piped' }) === 3, 'the piped streams to close');
    await sleep(100);
    expect(errors).toEqual([]);
    expect(sum(await scrape(registry), 'stream_guard_actions_total', { route: '/piped' })).toBe(0);
  });

  it('off: the write returns false and the producer runs on (a zombie)', async () => {
    const r = await run(false);
    expect(r.outcome).toBe('ran to the end');
    expect(r.writesAfter).toBeGreaterThan(10);
  });

  it('a write after a guard cut throws too', async () => {
    const registry = new Registry();
    let caught: unknown;
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
          const big = Buffer.alloc(64 * 1024, 120);
          try {
            for (;;) {
              res.write(big);
              await sleep(1);
            }
          } catch (err) {
            caught = err;
          }
        },
        { registry, route: '/cut-then-throw', maxBufferedBytes: 256 * 1024, zombieAction: 'throw' },
      ),
    );
    const sock = await neverReadingClient(srv.port, '/cut-then-throw');
    cleanup.push(() => sock.destroy());
    await until(() => caught !== undefined, 'the producer to be stopped');
    expect(caught).toBeInstanceOf(StreamClosedError);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_guard_actions_total', { guard: 'max_buffered_bytes' })).toBe(1);
    expect(sum(samples, 'stream_guard_actions_total', { guard: 'zombie_action' })).toBe(1);
  });
});

describe("stalledAction: 'destroy'", () => {
  it('cuts the stream when stalled_write is raised, whatever rule raised it', async () => {
    const registry = new Registry();
    const seen = collect('/stalled-cut');
    let closed = false;
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
          res.on('close', () => (closed = true));
          const chunk = Buffer.alloc(64 * 1024, 120);
          // a well-behaved producer: it waits for drain, so its queue stays small; only the stall rule can see it
          while (!res.destroyed) {
            if (!res.write(chunk)) await drainOrClose(res);
          }
        },
        { registry, route: '/stalled-cut', stallAfterMs: STALL, stalledAction: 'destroy' },
      ),
    );
    const sock = await neverReadingClient(srv.port, '/stalled-cut');
    cleanup.push(() => sock.destroy());
    await until(() => closed, 'the stalled stream to be cut', 15_000);
    expect(seen.map((f) => f.kind)).toEqual(['stalled_write', 'guard_action']);
    expect(seen[1]!.detail).toMatch(/^guard stalled_action: stalled_write \(/);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_guard_actions_total', { route: '/stalled-cut', guard: 'stalled_action' })).toBe(1);
    expect(sum(samples, 'stream_leaks_total', { route: '/stalled-cut', kind: 'stalled_write' })).toBe(1);
    expect(sum(samples, 'stream_duration_seconds_count', { route: '/stalled-cut', outcome: 'error' })).toBe(1);
  });

  it('without it the stalled stream stays open', async () => {
    const seen = collect('/stalled-open');
    let closed = false;
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
          res.on('close', () => (closed = true));
          const chunk = Buffer.alloc(64 * 1024, 120);
          while (!res.destroyed) {
            if (!res.write(chunk)) await drainOrClose(res);
          }
        },
        { registry: new Registry(), route: '/stalled-open', stallAfterMs: STALL },
      ),
    );
    const sock = await neverReadingClient(srv.port, '/stalled-open');
    cleanup.push(() => sock.destroy());
    await until(() => seen.length > 0, 'stalled_write');
    await sleep(STALL * 3);
    expect(closed).toBe(false);
    expect(seen.map((f) => f.kind)).toEqual(['stalled_write']);
  });
});

describe('no false alarms with every guard on', () => {
  it('a slow client that does drain, a heartbeating SSE stream, a stream that ends after the threshold, producers that stop at once, and an idle keep-alive connection: nothing is cut', async () => {
    const registry = new Registry();
    const found: Finding[] = [];
    cleanup.push(onFinding((f) => f.route === '/healthy-guarded' && found.push(f)));
    const srv = await serve(
      instrument(
        async (req, res) => {
          const ac = new AbortController();
          res.on('close', () => ac.abort());
          if (req.url === '/slow-drain') {
            res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
            const chunk = Buffer.alloc(64 * 1024, 100);
            for (let i = 0; i < 60 && !ac.signal.aborted; i++) {
              if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
            }
            return void res.end();
          }
          if (req.url === '/heartbeat') {
            res.writeHead(200, { 'Content-Type': 'text/event-stream' });
            for (let i = 0; i < 40 && !ac.signal.aborted; i++) {
              res.write(': heartbeat\n\n');
              await sleep(100);
            }
            return void res.end();
          }
          if (req.url === '/just-after') {
            res.writeHead(200, { 'Content-Type': 'text/event-stream' });
            res.write('data: start\n\n');
            await sleep(DANGLE + 100);
            return void res.end('data: end\n\n');
          }
          if (req.url === '/short') {
            res.writeHead(200, { 'Content-Type': 'text/event-stream' });
            res.write('data: 1\n\n');
            await sleep(20);
            return void res.end('data: 2\n\n');
          }
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          while (!ac.signal.aborted) {
            res.write('data: token\n\n');
            await sleep(10);
          }
        },
        { registry, route: '/healthy-guarded', stallAfterMs: STALL, danglingAfterMs: DANGLE, trackAsync: true, ...ALL_GUARDS },
      ),
    );
    const slowReader = new Promise<void>((resolve) => {
      http.get(srv.url + '/slow-drain', { agent: false }, (res) => {
        res.on('data', () => {
          res.pause();
          setTimeout(() => res.resume(), 15);
        });
        res.on('end', resolve);
      });
    });
    // keep-alive: one connection carries a stream, idles for 3x deadPeerMs (keep-alive probes are answered), then carries another
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanup.push(() => agent.destroy());
    const keepAlive = (async () => {
      await get(srv.url + '/short', agent);
      await sleep(3000);
      await get(srv.url + '/short', agent);
    })();
    await Promise.all([
      slowReader,
      keepAlive,
      get(srv.url + '/heartbeat'),
      get(srv.url + '/just-after'),
      getAndAbort(srv.url + '/stops-at-once', 50),
      getAndAbort(srv.url + '/stops-at-once', 200),
    ]);
    await sleep(DANGLE + 800);
    expect(found).toEqual([]);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_guard_actions_total')).toBe(0);
    expect(sum(samples, 'stream_leaks_total')).toBe(0);
    expect(sum(samples, 'stream_started_total')).toBe(7);
    expect(sum(samples, 'stream_duration_seconds_count', { outcome: 'error' })).toBe(0);
    expect(sum(samples, 'stream_active_connections')).toBe(0);
  });
});
