import { afterEach, describe, expect, it } from 'vitest';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import Router from '@koa/router';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { streamscope } from '../src/adapters/express.js';
import streamscopeFastify from '../src/adapters/fastify.js';
import streamscopeKoa from '../src/adapters/koa.js';
import { get, scrape, sleep, sum, until } from './helpers/http.js';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function sseBody(res: http.ServerResponse, n = 3): Promise<void> {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  for (let i = 0; i < n; i++) {
    res.write(`data: ${i}\n\n`);
    await sleep(2);
  }
  res.end();
}

describe('framework adapters take the route label from the route template', () => {
  it('Express 5: instrument() on a route handler', async () => {
    const registry = new Registry();
    const app = express();
    app.get('/users/:id/events', instrument((req, res) => sseBody(res), { registry }));
    const server = (await new Promise<http.Server>((r) => {
      const s = app.listen(0, '127.0.0.1', () => r(s));
    })) as http.Server;
    closers.push(() => server.close());
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await get(`${base}/users/1/events`);
    await get(`${base}/users/2/events`);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_started_total', { route: '/users/:id/events' })).toBe(2);
    expect(samples.filter((s) => s.name === 'stream_started_total').map((s) => s.labels.route)).toEqual(['/users/:id/events']);
  });

  it('Express 5: app.use(streamscope()) with a router mounted under a base path', async () => {
    const registry = new Registry();
    const app = express();
    app.use(streamscope({ registry }));
    const router = express.Router();
    router.get('/feed/:topic', (req, res) => void sseBody(res));
    app.use('/api', router);
    app.get('/plain', (_req, res) => void res.json({ ok: true }));
    const server = (await new Promise<http.Server>((r) => {
      const s = app.listen(0, '127.0.0.1', () => r(s));
    })) as http.Server;
    closers.push(() => server.close());
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await get(`${base}/api/feed/news`);
    await get(`${base}/plain`);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_started_total', { route: '/api/feed/:topic' })).toBe(1);
    expect(sum(samples, 'stream_started_total')).toBe(1); // res.json is not a stream
  });

  it('Fastify: the plugin labels by routeOptions.url and sees streams sent as a Readable', async () => {
    const registry = new Registry();
    const app = Fastify();
    await app.register(streamscopeFastify, { registry });
    app.get('/jobs/:id/log', async (_request, reply) => {
      reply.header('Content-Type', 'application/x-ndjson');
      async function* rows() {
        for (let i = 0; i < 5; i++) {
          yield JSON.stringify({ i }) + '\n';
          await sleep(2);
        }
      }
      return reply.send(Readable.from(rows()));
    });
    app.get('/boom', async (_request, reply) => {
      reply.raw.writeHead(200, { 'Content-Type': 'text/event-stream' });
      reply.raw.write('data: 1\n\n');
      await sleep(2);
      throw new Error('route failed');
    });
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const r = await get(`${base}/jobs/7/log`);
    expect(r.body.toString().trim().split('\n')).toHaveLength(5);
    await get(`${base}/jobs/8/log`);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_started_total', { route: '/jobs/:id/log' })).toBe(2);
    expect(sum(samples, 'stream_duration_seconds_count', { route: '/jobs/:id/log', outcome: 'completed' })).toBe(2);
    // a route that throws after the stream opened: error outcome through the onError hook
    await get(`${base}/boom`).catch(() => undefined);
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route: '/boom' }) === 1, '/boom to close');
    expect(sum(await scrape(registry), 'stream_duration_seconds_count', { route: '/boom', outcome: 'error' })).toBe(1);
  });

  it('Koa: the middleware labels by the @koa/router template', async () => {
    const registry = new Registry();
    const app = new Koa();
    app.use(streamscopeKoa({ registry }));
    const router = new Router();
    router.get('/rooms/:room/stream', (ctx) => {
      ctx.type = 'text/event-stream';
      const body = new Readable({ read() {} });
      ctx.body = body;
      let i = 0;
      const t = setInterval(() => {
        body.push(`data: ${i++}\n\n`);
        if (i === 4) {
          clearInterval(t);
          body.push(null);
        }
      }, 2);
    });
    app.use(router.routes());
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    closers.push(() => server.close());
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const r = await get(`${base}/rooms/lobby/stream`);
    expect(r.body.toString()).toContain('data: 3');
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count') === 1, 'stream to close');
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_started_total', { route: '/rooms/:room/stream' })).toBe(1);
    expect(sum(samples, 'stream_writes_total', { route: '/rooms/:room/stream' })).toBe(4);
  });
});
