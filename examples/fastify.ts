/**
 * Fastify: observe the streaming routes an app already has, without rewriting them.
 *
 *   npx tsx examples/fastify.ts
 *   curl -N http://127.0.0.1:<port>/rooms/7/events   # an existing SSE route (reply.raw)
 *   curl -N http://127.0.0.1:<port>/export            # an existing NDJSON export (a Readable)
 *   curl http://127.0.0.1:<port>/metrics              # route="/rooms/:room/events"
 *
 * Registering the `streamscope/fastify` plugin is the only change: every streaming reply is tracked
 * with the route template as its label. New code can use `sse()` on `reply.raw` (last route).
 */
import Fastify from 'fastify';
import { Readable } from 'node:stream';
import { streamscope } from '../src/adapters/fastify.js';
import { metricsHandler, sse } from '../src/index.js';

const app = Fastify();
await app.register(streamscope);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Existing route, unchanged: writes SSE on the raw response.
app.get('/rooms/:room/events', (request, reply) => {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  let n = 0;
  const t = setInterval(() => raw.write(`data: ${JSON.stringify({ room: (request.params as { room: string }).room, n: n++ })}\n\n`), 300);
  request.raw.on('close', () => clearInterval(t));
});

// Existing route, unchanged: returns a Readable that Fastify pipes as a chunked body.
app.get('/export', (_request, reply) => {
  async function* rows(): AsyncGenerator<string> {
    for (let i = 0; i < 200; i++) {
      yield JSON.stringify({ row: i }) + '\n';
      await sleep(10);
    }
  }
  reply.header('Content-Type', 'application/x-ndjson');
  return reply.send(Readable.from(rows()));
});

// New code: the resilient runtime on reply.raw, instrumented with no extra step.
const tickerOptions = { heartbeatMs: 10_000, retryMs: 1000 };
app.get('/ticker', (request, reply) => {
  reply.hijack();
  void sse(request.raw, reply.raw, tickerOptions).run(async (stream) => {
    for (let i = 0; !stream.signal.aborted; i++) {
      await stream.send({ id: `0-${i}`, event: 'tick', data: { i } });
      await sleep(500);
    }
  });
});

const metrics = metricsHandler();
app.get('/metrics', (request, reply) => {
  reply.hijack();
  metrics(request.raw, reply.raw);
});

const address = await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
console.log(`fastify example on ${address}  (/rooms/7/events, /export, /ticker, /metrics)`);
process.on('SIGINT', () => void app.close().then(() => process.exit(0)));
