import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { Registry } from 'prom-client';
import { get, parseExposition, scrape, sum, until, type Sample } from './helpers/http.js';
import { freePort, spawnNode, type Child } from './helpers/child.js';

/**
 * Only a close the peer caused is `client_aborted` (DESIGN.md). A handler that fails after the headers
 * went out makes the framework close the connection itself — Express's error handler calls
 * `req.socket.destroy()`, Fastify and Koa destroy the response — and that is `error`. Through the
 * built package: the adapters, and `--import streamscope/register` on an app that knows nothing of us.
 */

type Adapters = {
  express: typeof import('../src/adapters/express.js');
  fastify: typeof import('../src/adapters/fastify.js');
  koa: typeof import('../src/adapters/koa.js');
};
let lib: Adapters;
beforeAll(async () => {
  const dist = resolve('dist/esm');
  if (!existsSync(resolve(dist, 'express.js'))) throw new Error('dist/esm is missing: run `npm run build` first');
  lib = {
    express: (await import(resolve(dist, 'express.js'))) as Adapters['express'],
    fastify: (await import(resolve(dist, 'fastify.js'))) as Adapters['fastify'],
    koa: (await import(resolve(dist, 'koa.js'))) as Adapters['koa'],
  };
});

const closers: Array<() => unknown> = [];
const children: Child[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
  while (children.length) await children.pop()!.stop();
});

/** Opens a stream and waits for its first body bytes; `abort` then closes it from the client side. */
function open(base: string, path: string): Promise<{ abort(): void; closed: Promise<void> }> {
  return new Promise((resolveP, reject) => {
    let done!: () => void;
    const closed = new Promise<void>((r) => (done = r));
    const req = http.get(`${base}${path}`, { agent: false }, (res) => {
      res.once('data', () => resolveP({ abort: () => req.destroy(), closed }));
      res.on('error', () => done());
      res.on('close', () => done());
      res.resume();
    });
    req.on('error', (err) => {
      done();
      reject(err);
    });
  });
}

async function outcomes(get: () => Promise<Sample[]>, route: string, n: number): Promise<Record<string, number>> {
  await until(async () => sum(await get(), 'stream_duration_seconds_count', { route }) >= n, `${n} closed stream(s) on ${route}`);
  const out: Record<string, number> = {};
  for (const s of await get()) {
    if (s.name === 'stream_duration_seconds_count' && s.labels.route === route && s.value > 0) out[s.labels.outcome as string] = s.value;
  }
  return out;
}

function listen(server: http.Server): Promise<string> {
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

function sse(res: http.ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  res.write('data: 1\n\n');
}

/** A body stream that sends one event, then fails. */
function failingBody(): Readable {
  let n = 0;
  return new Readable({
    read() {
      if (n++ === 0) this.push('data: 1\n\n');
      else setTimeout(() => this.destroy(new Error('upstream failed')), 30);
    },
  });
}

/** A body stream that never ends (until the client leaves). */
function endlessBody(): Readable {
  return new Readable({
    read() {
      setTimeout(() => this.push('data: 2\n\n'), 20);
    },
  });
}

describe('a close the server caused is error, a close the client caused is client_aborted', () => {
  it('Express 5 with streamscope/express: next(err) and an async throw after the headers', async () => {
    const registry = new Registry();
    const app = express();
    app.use(lib.express.streamscope({ registry, route: (req) => req.url }));
    app.get('/next-err', (_req, res, next) => {
      sse(res);
      setTimeout(() => next(new Error('upstream failed')), 30);
    });
    app.get('/async-throw', async (_req, res) => {
      sse(res);
      await new Promise((r) => setTimeout(r, 30));
      throw new Error('upstream failed');
    });
    app.get('/forever', (_req, res) => {
      sse(res);
      const t = setInterval(() => res.write('data: 2\n\n'), 20);
      res.on('close', () => clearInterval(t));
    });
    const base = await listen(http.createServer(app));
    await (await open(base, '/next-err')).closed;
    await (await open(base, '/async-throw')).closed;
    (await open(base, '/forever')).abort();
    const s = () => scrape(registry);
    expect(await outcomes(s, '/next-err', 1)).toEqual({ error: 1 });
    expect(await outcomes(s, '/async-throw', 1)).toEqual({ error: 1 });
    expect(await outcomes(s, '/forever', 1)).toEqual({ client_aborted: 1 });
  });

  it('Fastify 5 with the streamscope plugin: a throw after writing, a failing body stream', async () => {
    const registry = new Registry();
    const app = Fastify({ logger: false });
    await app.register(lib.fastify.streamscopeFastify, { registry });
    app.get('/throw', async (_req, reply) => {
      sse(reply.raw);
      await new Promise((r) => setTimeout(r, 30));
      throw new Error('upstream failed');
    });
    app.get('/body-err', (_req, reply) => reply.type('text/event-stream').send(failingBody()));
    app.get('/forever', (_req, reply) => reply.type('text/event-stream').send(endlessBody()));
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    await (await open(base, '/throw')).closed;
    await (await open(base, '/body-err')).closed;
    (await open(base, '/forever')).abort();
    const s = () => scrape(registry);
    expect(await outcomes(s, '/throw', 1)).toEqual({ error: 1 });
    expect(await outcomes(s, '/body-err', 1)).toEqual({ error: 1 });
    expect(await outcomes(s, '/forever', 1)).toEqual({ client_aborted: 1 });
  });

  it('Koa 3 with the streamscope middleware: a failing body stream', async () => {
    const registry = new Registry();
    const app = new Koa();
    app.silent = true;
    app.use(lib.koa.streamscopeKoa({ registry, route: (req) => req.url }));
    app.use((ctx) => {
      ctx.type = 'text/event-stream';
      ctx.body = ctx.path === '/body-err' ? failingBody() : endlessBody();
    });
    const base = await listen(http.createServer(app.callback()));
    await (await open(base, '/body-err')).closed;
    (await open(base, '/forever')).abort();
    const s = () => scrape(registry);
    expect(await outcomes(s, '/body-err', 1)).toEqual({ error: 1 });
    expect(await outcomes(s, '/forever', 1)).toEqual({ client_aborted: 1 });
  });

  it('node --import streamscope/register on an Express 5 app: next(err) and an async throw after the headers', async () => {
    const metricsPort = await freePort();
    const child = await spawnNode(['--import', 'streamscope/register', 'test/fixtures/express-errors-app.mjs'], {
      STREAMSCOPE_METRICS_PORT: String(metricsPort),
      STREAMSCOPE_METRICS_HOST: '127.0.0.1',
    });
    children.push(child);
    const base = `http://127.0.0.1:${child.hello.port as number}`;
    await (await open(base, '/next-err')).closed;
    await (await open(base, '/async-throw')).closed;
    (await open(base, '/forever')).abort();
    const s = async () => parseExposition((await get(`http://127.0.0.1:${metricsPort}/metrics`)).body.toString()).samples;
    expect(await outcomes(s, '/next-err', 1)).toEqual({ error: 1 });
    expect(await outcomes(s, '/async-throw', 1)).toEqual({ error: 1 });
    expect(await outcomes(s, '/forever', 1)).toEqual({ client_aborted: 1 });
  });
});
