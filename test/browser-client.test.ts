import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createHub, redisStore, type Hub } from '../src/index.js';
import { ROOT } from './helpers/child.js';
import { faultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { startRedis, type RedisServer } from './helpers/redis.js';

/**
 * streamscope/client, built (dist/esm/client.js, bundled for the page by esbuild as a user's bundler would),
 * in headless Chromium, against two instances (child processes, the built package) that share one real
 * redis-server, through a TCP proxy that sends each connection to the next instance and injects one fault:
 * a flipped byte inside an event, or a cut in the middle of one. The page must get every event exactly once
 * and in order, and the resume must land on the other instance. A stock EventSource reads the same
 * checksummed stream unchanged. Needs `npm run build` first.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const CLIENT_PAGE = `<!doctype html><meta charset="utf-8"><title>client</title><script src="/client.js"></script><script>
window.received = []; window.drops = []; window.resets = []; window.errors = []; window.opens = 0;
window.client = streamscopeClient.connect('/events?channel=room', {
  retryMs: 20,
  onEvent: (e) => window.received.push(e.id + ' ' + e.data),
  onDrop: (reason) => window.drops.push(reason),
  onReset: (i) => window.resets.push(i.reason),
  onError: (e) => window.errors.push(e.code),
  onOpen: () => window.opens++,
});
</script>`;

const STOCK_PAGE = `<!doctype html><meta charset="utf-8"><title>stock</title><script>
window.received = []; window.opens = 0;
const es = new EventSource('/events?channel=room');
es.addEventListener('message', (e) => window.received.push(e.lastEventId + ' ' + e.data));
es.addEventListener('open', () => window.opens++);
</script>`;

interface Instance {
  port: number;
  /** The Last-Event-ID of each event-stream request it served (null: none), in order. */
  subs: Array<string | null>;
  proc: ChildProcess;
}

let browser: Browser;
let redis: RedisServer;
let dir: string;
beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`chromium not found at ${CHROMIUM} (set CHROMIUM_PATH)`);
  if (!existsSync(`${ROOT}/dist/esm/client.js`)) throw new Error('dist/esm/client.js is missing: run `npm run build` first');
  dir = mkdtempSync(join(tmpdir(), 'streamscope-client-page-'));
  // The built client bundled for a page, as a user's bundler would; platform 'browser' fails on any node: import.
  const out = await build({ entryPoints: [`${ROOT}/dist/esm/client.js`], bundle: true, format: 'iife', globalName: 'streamscopeClient', platform: 'browser', write: false, logLevel: 'silent' });
  writeFileSync(join(dir, 'client.js'), out.outputFiles[0]!.text);
  writeFileSync(join(dir, 'client.html'), CLIENT_PAGE);
  writeFileSync(join(dir, 'stock.html'), STOCK_PAGE);
  [browser, redis] = await Promise.all([chromium.launch({ executablePath: CHROMIUM, args: ARGS }), startRedis()]);
});
afterAll(async () => {
  await browser?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

let prefixN = 0;

function startInstance(prefix: string): Promise<Instance> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [`${ROOT}/test/fixtures/hub-instance.mjs`], {
      env: { ...process.env, STREAMSCOPE_DIST: `${ROOT}/dist/esm/index.js`, REDIS_URL: redis.url, KEY_PREFIX: prefix, STATIC_DIR: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const inst: Instance = { port: 0, subs: [], proc };
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return r();
          proc.once('exit', () => r());
          proc.kill('SIGTERM');
          setTimeout(() => proc.kill('SIGKILL'), 3000).unref();
        }),
    );
    proc.once('exit', (code) => reject(new Error(`instance exited with ${code}: ${err}`)));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as { port?: number; sub?: number; lastEventId?: string | null };
      if (m.port !== undefined) {
        inst.port = m.port;
        resolve(inst);
      } else inst.subs.push(m.lastEventId ?? null);
    });
  });
}

/** Two instances on one Redis behind a fault proxy, and a publisher (a hub of this process) on the same keys. */
async function cluster(): Promise<{ instances: Instance[]; proxy: FaultProxy; publisher: Hub }> {
  const prefix = `bc${++prefixN}:`;
  const instances = await Promise.all([startInstance(prefix), startInstance(prefix)]);
  const proxy = await faultProxy(instances.map((i) => i.port));
  cleanups.push(() => proxy.close());
  const publisher = createHub({ store: redisStore({ url: redis.url, keyPrefix: prefix }) });
  cleanups.push(() => publisher.close());
  return { instances, proxy, publisher };
}

async function openPage(url: string): Promise<Page> {
  const page = await browser.newPage();
  cleanups.push(() => page.close());
  await page.goto(url);
  return page;
}

type W = { received: string[]; drops: string[]; resets: string[]; errors: string[]; opens: number; client?: { lastEventId?: string } };

async function receivedIn(page: Page, n: number, report: () => string): Promise<string[]> {
  try {
    await page.waitForFunction((k) => (window as unknown as W).received.length >= k, n, { timeout: 30_000 });
  } catch (err) {
    const w = await page.evaluate(() => {
      const x = window as unknown as W;
      return { received: x.received.length, last: x.received.at(-1), drops: x.drops, errors: x.errors, opens: x.opens };
    });
    throw new Error(`page received ${w.received} of ${n} (last ${w.last}; drops ${w.drops}; errors ${w.errors}; opens ${w.opens})\n${report()}`, { cause: err });
  }
  // a little longer: a duplicate would arrive after the last expected event
  await new Promise((r) => setTimeout(r, 200));
  return page.evaluate(() => (window as unknown as W).received);
}

/** Publishes `datas` one by one, spaced so that each goes out as a live event of its own. */
async function publishAll(publisher: Hub, datas: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const d of datas) {
    ids.push(await publisher.publish('room', d));
    await new Promise((r) => setTimeout(r, 3));
  }
  return ids;
}

describe('streamscope/client in Chromium: two instances on one Redis, a proxy that corrupts or cuts', () => {
  for (const fault of ['flip', 'cut'] as const) {
    it(`${fault === 'flip' ? 'one byte flipped inside one event' : 'the connection cut in the middle of an event'}: every event exactly once, in order; the resume lands on the other instance`, async () => {
      const { instances, proxy, publisher } = await cluster();
      const page = await openPage(`${proxy.url}/client.html`);
      // connected and anchored (the first connection's anchor comment): nothing published from here on is lost
      await page.waitForFunction(() => (window as unknown as W).client?.lastEventId !== undefined, undefined, { timeout: 20_000 });
      const marker = fault === 'flip' ? 'FLIP-ME' : 'CUT-IN-HERE';
      const injected = fault === 'flip' ? proxy.flip(marker) : proxy.cut(marker);
      const datas = Array.from({ length: 60 }, (_, i) => (i === 25 ? `${marker} ${i} ${'z'.repeat(300)}` : `e${i}`));
      const ids = await publishAll(publisher, datas);
      await injected;
      const report = (): string => [...proxy.log, ...instances.map((inst, k) => `instance ${k}: subs ${JSON.stringify(inst.subs)}`)].join('\n');
      const received = await receivedIn(page, ids.length, report);
      expect(received).toEqual(ids.map((id, i) => `${id} ${datas[i]}`));
      const w = await page.evaluate(() => {
        const x = window as unknown as W;
        return { drops: x.drops, errors: x.errors, resets: x.resets, opens: x.opens };
      });
      expect(w.drops).toEqual(fault === 'flip' ? ['checksum'] : []);
      expect(w.errors).toEqual([]);
      expect(w.resets).toEqual([]);
      expect(w.opens).toBe(2);
      // the first event-stream request (no Last-Event-ID) on one instance, the resume on the other
      const first = instances.findIndex((inst) => inst.subs.includes(null));
      expect(first, report()).toBeGreaterThanOrEqual(0);
      const other = instances[1 - first]!;
      expect(other.subs.filter((s) => s !== null), report()).toHaveLength(1);
      expect(ids.slice(0, 25)).toContain(other.subs.find((s) => s !== null));
    });
  }

  it('a stock EventSource on the same checksummed stream gets every event, data unchanged', async () => {
    const { proxy, publisher } = await cluster();
    const page = await openPage(`${proxy.url}/stock.html`);
    await page.waitForFunction(() => (window as unknown as W).opens === 1, undefined, { timeout: 20_000 });
    const datas = ['plain', 'two\nlines', JSON.stringify({ text: 'naïve 🎉' }), ' leading space', ''];
    const ids = await publishAll(publisher, datas);
    const received = await receivedIn(page, ids.length, () => proxy.log.join('\n'));
    expect(received).toEqual(ids.map((id, i) => `${id} ${datas[i]}`));
  });
});
