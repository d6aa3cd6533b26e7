import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { get, parseExposition, sum, until, type Sample } from './helpers/http.js';
import { spawnNode, type Child } from './helpers/child.js';
import { installApp, installedVersion, type App } from './helpers/tarball.js';

// A Hono stream that fails mid-way is outcome `error`, not `completed`: a streamSSE/stream callback that writes
// and then throws (Hono catches it, logs it and ends the body normally), a Web Streams body that errors
// (controller.error(), a rejected pull). Through the packed tarball with the real hono and @hono/node-server,
// under the middleware, under instrumentFetch and under --import streamscope/register; read from /metrics.

let app: App;
const children: Child[] = [];

beforeAll(async () => {
  app = await installApp(
    { hono: installedVersion('hono'), '@hono/node-server': installedVersion('@hono/node-server'), 'prom-client': installedVersion('prom-client') },
    'module',
  );
}, 360_000);

afterAll(async () => {
  for (const c of children) await c.stop();
  app?.remove();
});

const SERVER = `
import http from 'node:http';
import { Hono } from 'hono';
import { streamSSE as honoStreamSSE } from 'hono/streaming';
import { serve } from '@hono/node-server';
import { metricsHandler } from 'streamscope';
import { streamscope, instrumentFetch, streamSSE, stream } from 'streamscope/hono';

const mode = process.env.APP_MODE;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const enc = new TextEncoder();
const app = new Hono();
if (mode === 'middleware') app.use(streamscope());
// writes one event, then the upstream (an LLM call) breaks
app.get('/sse-throw', (c) => streamSSE(c, async (s) => {
  await s.writeSSE({ data: 'token 1' });
  await s.sleep(20);
  throw new Error('upstream failed');
}));
app.get('/sse-onerror', (c) => streamSSE(c, async (s) => {
  await s.writeSSE({ data: 'token 1' });
  await s.sleep(20);
  throw new Error('upstream failed');
}, async (err, s) => { await s.writeSSE({ event: 'note', data: 'failed: ' + err.message }); }));
app.get('/stream-throw', (c) => stream(c, async (s) => {
  await s.write('line 1\\n');
  await s.sleep(20);
  throw new Error('upstream failed');
}));
app.get('/sse-ok', (c) => streamSSE(c, async (s) => {
  for (let i = 0; i < 3; i++) { await s.writeSSE({ data: 'token ' + i }); await s.sleep(5); }
}));
// Hono's own helper: the throw is caught inside Hono and never reaches streamscope (docs/instrument.md)
app.get('/hono-own-throw', (c) => honoStreamSSE(c, async (s) => {
  await s.writeSSE({ data: 'token 1' });
  await s.sleep(20);
  throw new Error('upstream failed');
}));
function body(fail) {
  let i = 0;
  return new ReadableStream({
    async pull(ctrl) {
      await sleep(10);
      if (i < 2) { ctrl.enqueue(enc.encode('line ' + i++ + '\\n')); return; }
      if (fail === 'error') ctrl.error(new Error('boom'));
      else if (fail === 'reject') throw new Error('pull failed');
      else ctrl.close();
    },
  });
}
const ndjson = { headers: { 'content-type': 'application/x-ndjson' } };
app.get('/ws-error', () => new Response(body('error'), ndjson));
app.get('/ws-reject', () => new Response(body('reject'), ndjson));
app.get('/ws-ok', () => new Response(body('ok'), ndjson));

const fetch = mode === 'fetch' ? instrumentFetch(app.fetch) : app.fetch;
const metrics = http.createServer(metricsHandler());
metrics.listen(0, '127.0.0.1', () => {
  serve({ fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
    console.log(JSON.stringify({ port: info.port, metrics: metrics.address().port }));
  });
});
`;

/** GET that never rejects: the body received and how the response ended (a cut body is `aborted`). */
function fetchBody(url: string): Promise<{ body: string; ended: 'end' | 'aborted' }> {
  return new Promise((resolve) => {
    let body = '';
    const req = http.get(url, { agent: false }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ body, ended: 'end' }));
      res.on('error', () => resolve({ body, ended: 'aborted' }));
      res.on('aborted', () => resolve({ body, ended: 'aborted' }));
    });
    req.on('error', () => resolve({ body, ended: 'aborted' }));
  });
}

const ROUTES = ['/sse-throw', '/sse-onerror', '/stream-throw', '/sse-ok', '/hono-own-throw', '/ws-error', '/ws-reject', '/ws-ok'];
const EXPECTED: Record<string, string> = {
  '/sse-throw': 'error',
  '/sse-onerror': 'error',
  '/stream-throw': 'error',
  '/sse-ok': 'completed',
  '/hono-own-throw': 'completed',
  '/ws-error': 'error',
  '/ws-reject': 'error',
  '/ws-ok': 'completed',
};

/** route → the outcomes counted for it, e.g. `error` or `completed,error`. */
function outcomes(m: Sample[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const r of ROUTES) {
    out[r] = ['completed', 'error', 'client_aborted', 'timeout']
      .filter((o) => m.some((x) => x.name === 'stream_duration_seconds_count' && x.labels.outcome === o && x.labels.route?.includes(r) && x.value > 0))
      .join(',');
  }
  return out;
}

describe('a Hono stream that fails mid-way is outcome error (packed tarball, real hono + @hono/node-server)', () => {
  for (const mode of ['middleware', 'fetch', 'register'] as const) {
    it(`${mode === 'middleware' ? 'app.use(streamscope())' : mode === 'fetch' ? 'instrumentFetch(app.fetch)' : '--import streamscope/register'}: a throwing streamSSE/stream callback and an erroring Web Streams body are error; healthy ones completed`, async () => {
      const file = app.file('hono-errors.mjs', SERVER);
      const args = mode === 'register' ? ['--import', 'streamscope/register', file] : [file];
      const child = await spawnNode(args, { APP_MODE: mode }, app.dir);
      children.push(child);
      const base = `http://127.0.0.1:${child.hello.port as number}`;
      const seen: Record<string, { body: string; ended: string }> = {};
      for (const r of ROUTES) seen[r] = await fetchBody(base + r);
      // what the clients got: one event before the failure; the healthy ones whole
      expect(seen['/sse-throw']!.body).toContain('data: token 1');
      expect(seen['/sse-ok']!.body.match(/^data: /gm)).toHaveLength(3);
      expect(seen['/ws-ok']!.body).toBe('line 0\nline 1\n');
      const scrape = async (): Promise<Sample[]> =>
        parseExposition((await get(`http://127.0.0.1:${child.hello.metrics as number}/metrics`)).body.toString()).samples;
      const m = await until(async () => {
        const x = await scrape();
        return sum(x, 'stream_duration_seconds_count') >= ROUTES.length ? x : null;
      }, `${ROUTES.length} closed streams`, 15_000).catch(async () => scrape());
      expect(outcomes(m!)).toEqual(EXPECTED);
      expect(sum(m!, 'stream_started_total')).toBe(ROUTES.length);
      expect(sum(m!, 'stream_active_connections')).toBe(0);
      expect(sum(m!, 'streamscope_internal_errors_total')).toBe(0);
    }, 120_000);
  }
});
