import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { EventSource } from 'eventsource';
import { createHub, redisStore, compareIds, type Hub } from '../src/index.js';
import { get, newRegistry, scrape, startServer, sum, until, type TestServer } from './helpers/http.js';
import { expectAnchoredResume, hubApp, openSse, publishWithCuts, roundRobinProxy } from './helpers/sse.js';
import { startRedis, type RedisServer } from './helpers/redis.js';

let redis: RedisServer;
let admin: Redis;
beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  await admin?.quit();
  await redis?.stop();
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

let prefixN = 0;
function newHub(extra: Parameters<typeof createHub>[0] = {}, maxLen = 10000): Hub {
  const hub = createHub({ store: redisStore({ url: redis.url, maxLen, keyPrefix: `t${prefixN}:` }), heartbeatMs: 0, ...extra });
  cleanups.push(() => hub.close());
  return hub;
}

async function serve(hub: Hub) {
  const app = hubApp(hub);
  const srv: TestServer = await startServer(app.handler);
  cleanups.push(() => srv.close());
  return { app, srv };
}

async function clientCount(): Promise<number> {
  const list = (await admin.call('CLIENT', 'LIST')) as string;
  return list.trim().split('\n').filter(Boolean).length;
}

describe('redisStore on a real redis-server', () => {
  it('event ids are <epoch>:<Redis stream id>; replay then live, each once and in order', async () => {
    prefixN++;
    const hub = newHub();
    const { srv } = await serve(hub);
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push(await hub.publish('c', { data: { i } }));
    // <epoch>:<Redis stream id>, the epoch kept in Redis at the key `<keyPrefix>`
    const epoch = await admin.get(`t${prefixN}:`);
    expect(epoch).toMatch(/^[0-9a-f]{12}$/);
    const inRedis = (await admin.xrange(`t${prefixN}:c`, '-', '+')).map(([id]) => `${epoch}:${id}`);
    expect(inRedis).toEqual(ids);
    for (let i = 1; i < ids.length; i++) expect(compareIds(ids[i]!, ids[i - 1]!)).toBeGreaterThan(0);
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': ids[4]! });
    await until(() => c.events.length === 25, 'replay');
    for (let i = 30; i < 60; i++) ids.push(await hub.publish('c', { data: { i } }));
    await until(() => c.events.length === 55, 'live');
    expect(c.events.map((e) => e.id)).toEqual(ids.slice(5));
    c.close();
  });

  it('a first connection is anchored at the stream\'s last id; cut before its first event, it resumes on the other instance without a gap', async () => {
    prefixN++;
    const [a, b] = [newHub(), newHub()];
    const [sa, sb] = [await serve(a), await serve(b)];
    const before: string[] = [];
    for (let i = 0; i < 3; i++) before.push(await a.publish('c', `old ${i}`));
    // the first connection lands on instance a, the resume on instance b
    let n = 0;
    const front = await startServer((req, res) => (n++ === 0 ? sa : sb).app.handler(req, res));
    cleanups.push(() => front.close());
    await expectAnchoredResume(front.url, (d) => b.publish('c', d), 'c', before[2]!);
    expect(n).toBe(2);
    // an empty stream (no key yet) anchors at 0-0
    n = 0;
    await expectAnchoredResume(front.url, (d) => a.publish('empty', d), 'empty', '0-0');
  });

  it('MAXLEN ~ trims: an expired id gets 416 with X-Next-Cursor, and the cursor resumes without a gap', async () => {
    prefixN++;
    const registry = newRegistry();
    const hub = newHub({ registry, route: '/events' }, 100);
    const { srv } = await serve(hub);
    const ids: string[] = [];
    for (let i = 0; i < 500; i++) ids.push(await hub.publish('c', String(i)));
    const r = await get(`${srv.url}/events?lastEventId=${ids[0]}`);
    expect(r.status).toBe(416);
    const next = r.headers['x-next-cursor'] as string;
    const epoch = await admin.get(`t${prefixN}:`);
    const retained = (await admin.xrange(`t${prefixN}:c`, '-', '+')).map(([id]) => `${epoch}:${id}`);
    expect(retained.length).toBeLessThan(500);
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': next });
    await until(() => c.events.length === retained.length, 'retained replay');
    expect(c.events.map((e) => e.id)).toEqual(retained);
    c.close();
    const m = await scrape(registry);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'expired' })).toBe(1);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'replayed' })).toBe(1);
  });

  it('one blocking reader per instance: Redis connections do not grow with subscribers or channels', async () => {
    prefixN++;
    // connections of earlier tests' hubs are gone once only this test's admin connection is left
    await until(async () => (await clientCount()) === 1, 'earlier connections closed');
    const base = await clientCount();
    const hub = newHub();
    const { srv } = await serve(hub);
    const first = await openSse(`${srv.url}/events?channel=ch0`);
    await until(() => hub.subscribers() === 1, 'one subscriber');
    await hub.publish('ch0', 'x');
    await until(() => first.events.length === 1, 'first event');
    const withOne = await clientCount();
    const clients = [first];
    for (let i = 1; i < 60; i++) clients.push(await openSse(`${srv.url}/events?channel=ch${i % 6}`));
    await until(() => hub.subscribers() === 60, '60 subscribers');
    for (let ch = 0; ch < 6; ch++) await hub.publish(`ch${ch}`, `to ${ch}`);
    await until(() => clients.every((c, i) => c.events.some((e) => e.data === `to ${i % 6}`)), 'fan-out to every subscriber');
    const withSixty = await clientCount();
    expect(withOne - base).toBe(2); // commands + the blocking reader
    expect(withSixty).toBe(withOne);
    for (const c of clients) c.close();
  });

  it('two instances behind a round-robin proxy: the eventsource client resumes on the other instance, across 20+ cuts', async () => {
    prefixN++;
    const registry = newRegistry();
    const hubA = newHub({ registry, route: '/events', retryMs: 20 });
    const hubB = newHub({ registry, route: '/events', retryMs: 20 });
    const a = await serve(hubA);
    const b = await serve(hubB);
    const proxy = await roundRobinProxy([a.srv.port, b.srv.port]);
    cleanups.push(() => proxy.close());
    const received: string[] = [];
    const es = new EventSource(`${proxy.url}/events?channel=room`);
    cleanups.push(() => es.close());
    const log: string[] = [];
    es.addEventListener('tick', (e) => {
      received.push(`${e.lastEventId} ${e.data}`);
      log.push(`${e.lastEventId} ${e.data}`);
    });
    es.addEventListener('open', () => log.push('open'));
    const subs = (): number => hubA.subscribers('room') + hubB.subscribers('room');
    await until(() => subs() === 1, 'connected');
    const { ids, cuts } = await publishWithCuts({
      // publish through both instances in turn
      publish: (i) => (i % 2 ? hubA : hubB).publish('room', { event: 'tick', data: String(i) }),
      cut: () => a.app.cutAll() + b.app.cutAll(),
      connected: () => subs() === 1,
      total: 400,
      cutEvery: 15,
      minCuts: 20,
      waitFor: (fn, what) => until(fn, what, 20_000, 2),
    });
    expect(cuts).toBeGreaterThanOrEqual(20);
    await until(() => received.length >= ids.length, 'every event', 30_000);
    if (process.env.DEBUG_DUPS) {
      const seen = new Map<string, number>();
      received.forEach((r, i) => {
        if (seen.has(r)) console.log('dup', r, 'at', i, 'first', seen.get(r), 'log', log.slice(Math.max(0, seen.get(r)! - 3), i + 2));
        seen.set(r, i);
      });
    }
    expect(received).toEqual(ids.map((id, i) => `${id} ${i}`));
    // reconnects really landed on both instances
    expect(a.app.subscriptions).toBeGreaterThanOrEqual(10);
    expect(b.app.subscriptions).toBeGreaterThanOrEqual(10);
    es.close();
    await until(async () => sum(await scrape(registry), 'stream_active_connections', { route: '/events' }) === 0, 'active back to 0');
    const m = await scrape(registry);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'replayed' })).toBeGreaterThanOrEqual(20);
    expect(sum(m, 'stream_duration_seconds_count', { route: '/events' })).toBe(sum(m, 'stream_started_total', { route: '/events' }));
  });

  it('a store whose Redis is unreachable answers 503 and never throws into the app', async () => {
    const hub = createHub({ store: redisStore({ url: 'redis://127.0.0.1:1', keyPrefix: 'x:' }), heartbeatMs: 0 });
    cleanups.push(() => hub.close());
    const app = hubApp(hub);
    const srv = await startServer(app.handler);
    cleanups.push(() => srv.close());
    const res = await get(`${srv.url}/events`);
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
    await expect(hub.publish('c', 'x')).rejects.toThrow();
  });

  it('uses a given ioredis client for commands and its duplicate for the reader, and leaves the client open on close', async () => {
    prefixN++;
    const client = new Redis(redis.url);
    cleanups.push(() => void client.quit());
    const hub = createHub({ store: redisStore({ client, keyPrefix: `t${prefixN}:` }), heartbeatMs: 0 });
    const { srv } = await serve(hub);
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': '0-0' });
    const id = await hub.publish('c', 'via the given client');
    await until(() => c.events.length === 1, 'event');
    expect(c.events[0]!.id).toBe(id);
    c.close();
    await hub.close();
    expect(await client.ping()).toBe('PONG');
  });
});

describe('redisStore without ioredis installed', () => {
  it('fails with one clear STREAMSCOPE_ERR_REDIS_MISSING error, and only when used', async () => {
    const dist = resolve('dist/esm');
    if (!existsSync(join(dist, 'index.js'))) throw new Error('dist/esm is missing: run `npm run build` first');
    // a copy of the package whose node_modules has its dependencies but not the optional peer ioredis
    const dir = mkdtempSync(join(tmpdir(), 'streamscope-noredis-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    cpSync(dist, join(dir, 'dist'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    mkdirSync(join(dir, 'node_modules', '@opentelemetry'), { recursive: true });
    symlinkSync(resolve('node_modules/prom-client'), join(dir, 'node_modules', 'prom-client'));
    symlinkSync(resolve('node_modules/tdigest'), join(dir, 'node_modules', 'tdigest'));
    symlinkSync(resolve('node_modules/bintrees'), join(dir, 'node_modules', 'bintrees'));
    symlinkSync(resolve('node_modules/@opentelemetry/api'), join(dir, 'node_modules', '@opentelemetry', 'api'));
    symlinkSync(resolve('node_modules/crc'), join(dir, 'node_modules', 'crc'));
    writeFileSync(
      join(dir, 'main.mjs'),
      `import { createHub, redisStore } from './dist/index.js';
const hub = createHub({ store: redisStore({ url: 'redis://127.0.0.1:1' }) }); // constructing needs nothing
try { await hub.publish('c', 'x'); console.log('no error'); }
catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })); }`,
    );
    const { stdout } = await promisify(execFile)(process.execPath, [join(dir, 'main.mjs')], { cwd: dir, timeout: 20_000 });
    const r = JSON.parse(stdout.trim()) as { code: string; message: string };
    expect(r.code).toBe('STREAMSCOPE_ERR_REDIS_MISSING');
    expect(r.message).toMatch(/ioredis/);
  });
});

