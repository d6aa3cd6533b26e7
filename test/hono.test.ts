import { afterEach, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { Hono } from 'hono';
import { stream, streamSSE } from 'hono/streaming';
import { serve, type ServerType } from '@hono/node-server';
import { streamscope, instrumentFetch } from '../src/adapters/hono.js';
import { getAndAbort, get, scrape, sleep, sum, until, type Sample } from './helpers/http.js';
import { h2get } from './helpers/h2.js';

// Hono on @hono/node-server (the real packages), in process: route labels, Web Streams bodies, cancellation,
// HTTP/2. The example app through the packed tarball is in examples-hono-http2.test.ts.

const servers: ServerType[] = [];
afterEach(async () => {
  while (servers.length) {
    const s = servers.pop()!;
    (s as { closeAllConnections?: () => void }).closeAllConnections?.();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

function listen(fetch: (req: Request, env?: unknown) => unknown, createServer?: typeof http2.createServer): Promise<string> {
  return new Promise((resolve) => {
    const s = serve({ fetch: fetch as never, port: 0, hostname: '127.0.0.1', ...(createServer ? { createServer } : {}) } as never, (info: AddressInfo) =>
      resolve(`http://127.0.0.1:${info.port}`),
    );
    servers.push(s);
  });
}

async function settled(registry: Registry, n: number): Promise<Sample[]> {
  await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count') >= n, `${n} closed stream(s)`);
  return scrape(registry);
}

describe('streamscope/hono', () => {
  it("labels streams by the template of the route that answered, in sub-apps too, never the raw URL", async () => {
    const registry = new Registry();
    const app = new Hono();
    app.use(streamscope({ registry }));
    app.get('/sse/:room', (c) =>
      streamSSE(c, async (s) => {
        for (let i = 0; i < 3; i++) {
          await s.writeSSE({ data: `${c.req.param('room')} ${i}` });
          await s.sleep(2);
        }
      }),
    );
    const api = new Hono();
    api.get('/tokens/:model', (c) =>
      stream(c, async (s) => {
        for (let i = 0; i < 4; i++) {
          await s.write(`tok${i}\n`);
          await s.sleep(2);
        }
      }),
    );
    app.route('/api', api);
    app.get('/json', (c) => c.json({ ok: true }));
    const url = await listen(app.fetch);
    const a = await get(`${url}/sse/general`);
    const b = await get(`${url}/sse/random-${Date.now()}`);
    const t = await get(`${url}/api/tokens/gpt`);
    await get(`${url}/json`);
    const m = await settled(registry, 3);
    expect(sum(m, 'stream_started_total')).toBe(3); // the JSON answer is not a stream
    expect(sum(m, 'stream_started_total', { route: '/sse/:room' })).toBe(2);
    expect(sum(m, 'stream_started_total', { route: '/api/tokens/:model' })).toBe(1);
    expect(sum(m, 'stream_bytes_written_total', { route: '/sse/:room' })).toBe(a.body.length + b.body.length);
    expect(sum(m, 'stream_bytes_written_total', { route: '/api/tokens/:model' })).toBe(t.body.length);
    expect(sum(m, 'stream_duration_seconds_count', { outcome: 'completed' })).toBe(3);
  });

  it('a client that leaves a Web Streams body: client_aborted, the ReadableStream is cancelled, no write after close', async () => {
    const registry = new Registry();
    let cancelled = false;
    let enqueued = 0;
    const app = new Hono();
    app.use(streamscope({ registry }));
    app.get('/feed/:id', () => {
      let timer: NodeJS.Timeout | undefined;
      const body = new ReadableStream<Uint8Array>({
        start(ctrl) {
          timer = setInterval(() => {
            ctrl.enqueue(new TextEncoder().encode(`line ${enqueued++}\n`));
          }, 3);
        },
        cancel() {
          cancelled = true;
          clearInterval(timer);
        },
      });
      return new Response(body, { headers: { 'content-type': 'application/x-ndjson' } });
    });
    const url = await listen(app.fetch);
    const got = await getAndAbort(`${url}/feed/1`, 40);
    const m = await settled(registry, 1);
    await until(() => cancelled, 'the ReadableStream to be cancelled');
    expect(sum(m, 'stream_duration_seconds_count', { route: '/feed/:id', outcome: 'client_aborted' })).toBe(1);
    expect(sum(m, 'stream_bytes_written_total')).toBeGreaterThanOrEqual(got);
    expect(sum(m, 'stream_writes_after_close_total')).toBe(0);
    expect(sum(m, 'stream_active_connections')).toBe(0);
  });

  it('Hono over HTTP/2 (@hono/node-server with http2.createServer): a ReadableStream body counted, a reset is client_aborted', async () => {
    const registry = new Registry();
    const app = new Hono();
    app.use(streamscope({ registry }));
    app.get('/ticks/:n', (c) => {
      const n = Number(c.req.param('n'));
      let i = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(ctrl) {
          await sleep(2);
          if (i >= n) ctrl.close();
          else ctrl.enqueue(new TextEncoder().encode(`tick ${i++}\n`));
        },
      });
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
    });
    const url = await listen(app.fetch, http2.createServer);
    const session = http2.connect(url);
    session.on('error', () => undefined);
    try {
      const ok = await h2get(session, '/ticks/5');
      expect(ok.body.toString().trim().split('\n')).toHaveLength(5);
      const cut = await h2get(session, '/ticks/100000', { resetAfter: 50 });
      expect(cut.reset).toBe(true);
      const m = await settled(registry, 2);
      expect(sum(m, 'stream_duration_seconds_count', { route: '/ticks/:n', outcome: 'completed' })).toBe(1);
      expect(sum(m, 'stream_duration_seconds_count', { route: '/ticks/:n', outcome: 'client_aborted' })).toBe(1);
      expect(sum(m, 'stream_bytes_written_total')).toBeGreaterThanOrEqual(ok.bytes + cut.bytes);
      expect(sum(m, 'streamscope_internal_errors_total')).toBe(0);
    } finally {
      session.destroy();
    }
  });

  it('instrumentFetch: a bare fetch handler served by @hono/node-server', async () => {
    const registry = new Registry();
    const url = await listen(
      instrumentFetch(
        () => {
          let i = 0;
          return new Response(
            new ReadableStream({
              async pull(ctrl) {
                await sleep(2);
                if (i >= 3) ctrl.close();
                else ctrl.enqueue(new TextEncoder().encode(`${i++}\n`));
              },
            }),
          );
        },
        { registry, route: '/bare' },
      ),
    );
    const r = await get(`${url}/whatever/123`);
    const m = await settled(registry, 1);
    expect(sum(m, 'stream_bytes_written_total', { route: '/bare' })).toBe(r.body.length);
    expect(sum(m, 'stream_duration_seconds_count', { route: '/bare', outcome: 'completed' })).toBe(1);
  });

  it('outside @hono/node-server (no c.env.outgoing): one clear warning, the app still answers', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      if ((w as { code?: string }).code === 'STREAMSCOPE_HONO_NO_NODE_RESPONSE') warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      const app = new Hono();
      app.use(streamscope({ registry: new Registry() }));
      app.get('/x', (c) => c.text('ok'));
      for (let i = 0; i < 3; i++) expect(await (await app.request('/x')).text()).toBe('ok');
      await sleep(10);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.message).toMatch(/@hono\/node-server/);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
