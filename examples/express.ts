/**
 * Express: observe the streaming handlers an app already has, without rewriting them.
 *
 *   npx tsx examples/express.ts
 *   curl -N http://127.0.0.1:<port>/tokens      # an LLM-style NDJSON token stream
 *   curl -N http://127.0.0.1:<port>/feed/42     # an SSE feed written by hand
 *   curl http://127.0.0.1:<port>/metrics        # route="/feed/:id", never the raw URL
 *
 * `streamscope()` tracks every streaming response of the app with the route template as label;
 * `instrument(handler)` on one route also sees that handler's own errors and when it settles
 * (which the dangling-stream detector uses). New code can use `sse()` directly (last route).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import { streamscope, instrument } from '../src/adapters/express.js';
import { metricsHandler, sse } from '../src/index.js';

const app = express();
app.use(streamscope());

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// An existing handler, unchanged: it streams NDJSON tokens and stops when the client leaves.
// (Typed with node:http types: instrument() accepts `(req: IncomingMessage, res: ServerResponse)` handlers.)
async function tokens(req: IncomingMessage, res: ServerResponse): Promise<void> {
  res.setHeader('Content-Type', 'application/x-ndjson');
  let gone = false;
  req.on('close', () => (gone = true));
  for (let i = 0; i < 50 && !gone; i++) {
    res.write(JSON.stringify({ token: `tok${i}` }) + '\n');
    await sleep(40);
  }
  res.end();
}
app.get('/tokens', instrument(tokens));

// Another existing handler: a hand-written SSE feed. The middleware alone tracks it.
app.get('/feed/:id', (req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  let n = 0;
  const t = setInterval(() => res.write(`id: ${n}\ndata: ${JSON.stringify({ feed: req.params.id, n: n++ })}\n\n`), 250);
  req.on('close', () => clearInterval(t));
});

// New code: the resilient runtime (backpressure, heartbeats, cancellation), instrumented already.
const clockOptions = { heartbeatMs: 10_000, timeoutMs: 60_000 };
app.get('/clock', (req, res) => {
  void sse(req, res, clockOptions).run(async (stream) => {
    while (!stream.signal.aborted) {
      await stream.send({ event: 'tick', data: { now: new Date().toISOString() } });
      await sleep(1000);
    }
  });
});

app.get('/metrics', metricsHandler());

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  console.log(`express example on http://127.0.0.1:${port}  (/tokens, /feed/42, /clock, /metrics)`);
});
process.on('SIGINT', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
