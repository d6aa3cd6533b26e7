/**
 * Hono on @hono/node-server: every streaming response is tracked, labelled by Hono's route template.
 *
 *   npx tsx examples/hono.ts
 *   curl -N http://127.0.0.1:<port>/sse/general     # streamSSE, route="/sse/:room" (never the raw URL)
 *   curl -N http://127.0.0.1:<port>/tokens          # stream(), NDJSON tokens
 *   curl -N http://127.0.0.1:<port>/raw             # a plain Web Response with a ReadableStream body
 *   curl http://127.0.0.1:<port>/metrics
 *
 * `?n=` sets how many events or chunks each route sends (default 5). Each stops when the client leaves.
 * A fetch handler without Hono's router is tracked too (`instrumentFetch`, at /fetch/* on a second port).
 */
import http from 'node:http';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
// Hono's streamSSE/stream, with a callback that throws counted as outcome="error" (docs/instrument.md)
import { streamscope, instrumentFetch, stream, streamSSE } from '../src/adapters/hono.js';
import { metricsHandler } from '../src/index.js';

const count = (url: string): number => Number(new URL(url).searchParams.get('n') ?? 5);

const app = new Hono();
app.use(streamscope());

app.get('/sse/:room', (c) =>
  streamSSE(c, async (s) => {
    const n = count(c.req.url);
    for (let i = 0; i < n && !s.aborted; i++) {
      await s.writeSSE({ id: String(i), event: 'message', data: JSON.stringify({ room: c.req.param('room'), i }) });
      await s.sleep(5);
    }
  }),
);

app.get('/tokens', (c) => {
  c.header('Content-Type', 'application/x-ndjson');
  return stream(c, async (s) => {
    const n = count(c.req.url);
    for (let i = 0; i < n && !s.aborted; i++) {
      await s.write(JSON.stringify({ token: `tok${i}` }) + '\n');
      await s.sleep(5);
    }
  });
});

// Any Web Streams body: a producer that stops when the client leaves (cancel).
function ticks(n: number): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  let i = 0;
  let timer: NodeJS.Timeout | undefined;
  return new ReadableStream({
    pull(ctrl) {
      return new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          if (i >= n) ctrl.close();
          else ctrl.enqueue(enc.encode(`tick ${i++}\n`));
          resolve();
        }, 5);
      });
    },
    cancel() {
      clearTimeout(timer);
    },
  });
}
app.get('/raw', (c) => new Response(ticks(count(c.req.url)), { headers: { 'content-type': 'application/x-ndjson' } }));

const server = serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 0), hostname: '127.0.0.1' }, (info) => {
  // A fetch handler with no router, on @hono/node-server as well.
  const bare = serve(
    {
      fetch: instrumentFetch((req: Request) => new Response(ticks(count(req.url)), { headers: { 'content-type': 'text/plain' } }), { route: '/fetch' }),
      port: 0,
      hostname: '127.0.0.1',
    },
    (bareInfo) => {
      const metrics = http.createServer(metricsHandler());
      metrics.listen(Number(process.env.METRICS_PORT ?? 0), '127.0.0.1', () => {
        const mport = (metrics.address() as { port: number }).port;
        console.log(`hono example on http://127.0.0.1:${info.port}  (/sse/:room, /tokens, /raw)`);
        console.log(`fetch handler on http://127.0.0.1:${bareInfo.port}  (/fetch/anything)`);
        console.log(`metrics on http://127.0.0.1:${mport}/metrics`);
      });
      process.on('SIGINT', () => stop(bare, metrics));
      process.on('SIGTERM', () => stop(bare, metrics));
    },
  );
});

function stop(...others: { close(cb?: () => void): unknown }[]): void {
  for (const s of [server, ...others]) s.close();
  setTimeout(() => process.exit(0), 200).unref();
}
