import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Registry } from 'prom-client';
import type { Tracer } from '@opentelemetry/api';
import { instrument, internalErrors, observeAll } from '../src/index.js';
import { get, scrape, sleep, serverPool, sum, until } from './helpers/http.js';

const run = promisify(execFile);
const serve = serverPool(afterEach);

class ThrowingRegistry extends Registry {
  override registerMetric(): void {
    throw new Error('registry is broken');
  }
}

const throwingTracer = {
  startSpan() {
    throw new Error('tracer is broken');
  },
  startActiveSpan() {
    throw new Error('tracer is broken');
  },
} as unknown as Tracer;

const app: http.RequestListener = async (_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'X-App': 'yes' });
  for (let i = 0; i < 20; i++) {
    res.write(`id: ${i}\ndata: ${'é'.repeat(i)}\n\n`);
    await sleep(1);
  }
  res.end('event: done\ndata: {}\n\n');
};

function comparable(r: { status: number; headers: http.IncomingHttpHeaders; body: Buffer }): unknown {
  const { date: _d, ...headers } = r.headers;
  return { status: r.status, headers, body: r.body.toString('base64') };
}

describe('the host app never sees a streamscope fault', () => {
  it('with a registry and a tracer that throw, responses are byte-identical and the faults are counted', async () => {
    const before = internalErrors();
    const bare = await serve(app);
    const broken = await serve(instrument(app, { registry: new ThrowingRegistry(), tracer: throwingTracer, route: '/broken' }));
    const a = await get(bare.url);
    const b = await get(broken.url);
    expect(comparable(b)).toEqual(comparable(a));
    const after = internalErrors();
    expect((after.metrics ?? 0) - (before.metrics ?? 0)).toBeGreaterThanOrEqual(1);
    expect((after.tracing ?? 0) - (before.tracing ?? 0)).toBeGreaterThanOrEqual(1);
    // and they show in any working registry
    const good = new Registry();
    const ok = await serve(instrument(app, { registry: good, route: '/ok' }));
    await get(ok.url);
    const samples = await scrape(good);
    expect(sum(samples, 'streamscope_internal_errors_total', { component: 'tracing' })).toBeGreaterThanOrEqual(1);
    expect(sum(samples, 'streamscope_internal_errors_total', { component: 'metrics' })).toBeGreaterThanOrEqual(1);
  });

  it('the app own errors pass through unchanged (same object, sync and async)', async () => {
    const err = new TypeError('app bug');
    const sync = instrument((_req: http.IncomingMessage, _res: http.ServerResponse): void => {
      throw err;
    });
    expect(() => sync({} as http.IncomingMessage, {} as http.ServerResponse)).toThrow(err);
    const rejection = Promise.reject(err);
    rejection.catch(() => undefined);
    const asyncH = instrument((_req: http.IncomingMessage, _res: http.ServerResponse) => rejection);
    const fake = { method: 'GET', url: '/' } as http.IncomingMessage;
    const res = new http.ServerResponse(fake);
    expect(asyncH(fake, res)).toBe(rejection);
    await expect(asyncH(fake, new http.ServerResponse(fake))).rejects.toBe(err);
  });

  it('instrument() on an instrumented handler, and observeAll() beside it, count nothing twice', async () => {
    const registry = new Registry();
    const once = instrument(app, { registry, route: '/twice' });
    const twice = instrument(once, { registry, route: '/twice' });
    expect(twice).toBe(once);
    const stop1 = observeAll({ registry });
    const stop2 = observeAll({ registry });
    try {
      const srv = await serve(twice);
      const r = await get(srv.url);
      await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count') >= 1, 'stream to close');
      const samples = await scrape(registry);
      expect(sum(samples, 'stream_started_total')).toBe(1);
      expect(sum(samples, 'stream_writes_total')).toBe(21); // 20 writes and the chunk given to end()
      expect(sum(samples, 'stream_bytes_written_total')).toBe(r.body.length);
      // the more specific config (instrument's route) wins over observeAll's
      expect(sum(samples, 'stream_started_total', { route: '/twice' })).toBe(1);
    } finally {
      stop1();
      stop2();
    }
  });

  it('loading the ESM and the CJS builds in one process counts each stream once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ss-dual-'));
    const root = resolve(import.meta.dirname, '..');
    const script = join(dir, 'dual.mjs');
    writeFileSync(
      script,
      `
import http from 'node:http';
import { createRequire } from 'node:module';
import * as esm from ${JSON.stringify(join(root, 'dist/esm/index.js'))};
const require = createRequire(${JSON.stringify(join(root, 'package.json'))});
const cjs = require(${JSON.stringify(join(root, 'dist/cjs/index.cjs'))});
const prom = require('prom-client');
const stopA = esm.observeAll();
const stopB = cjs.observeAll();
const h = cjs.instrument(esm.instrument(async (req, res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (let i = 0; i < 5; i++) { res.write('data: x\\n\\n'); await new Promise(r => setTimeout(r, 2)); }
  res.end();
}, { route: '/dual' }), { route: '/dual' });
const server = http.createServer(h).listen(0, '127.0.0.1', async () => {
  const { port } = server.address();
  for (let i = 0; i < 3; i++) await (await fetch('http://127.0.0.1:' + port + '/')).text();
  await new Promise(r => setTimeout(r, 50));
  const text = await prom.register.metrics();
  console.log(JSON.stringify({ text, same: esm.streams === cjs.streams }));
  server.close(); stopA(); stopB();
});
`,
    );
    const { stdout } = await run(process.execPath, [script], { cwd: root, timeout: 30_000 });
    const { text } = JSON.parse(stdout) as { text: string };
    const started = /stream_started_total\{route="\/dual",method="GET"\} (\d+)/.exec(text);
    const writes = /stream_writes_total\{route="\/dual"\} (\d+)/.exec(text);
    expect(started?.[1]).toBe('3');
    expect(writes?.[1]).toBe('15');
  });
});
