/**
 * A chat-style SSE service on the resilient runtime: rooms are hub channels, messages are published
 * with POST /messages, browsers follow a room with EventSource and resume with Last-Event-ID.
 *
 *   npx tsx examples/chat/server.ts                      # memory store, one instance
 *   REDIS_URL=redis://127.0.0.1:6379 PORT=3001 npx tsx examples/chat/server.ts   # run two of these
 *
 * Open the printed URL in two tabs. "Cut my connection" asks the server to drop your stream
 * mid-flow (CUT_EVERY_MS=3000 does it on a timer); the page shows each reconnect and how many
 * missed messages the resume replayed.
 */
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createHub, healthHandler, memoryStore, metricsHandler, redisStore, type SubscribeOptions } from '../../src/index.js';

const page = readFileSync(fileURLToPath(new URL('./index.html', import.meta.url)));
const store = process.env.REDIS_URL ? redisStore({ url: process.env.REDIS_URL, maxLen: 5000 }) : memoryStore({ maxEvents: 5000 });
const hub = createHub({
  store,
  heartbeatMs: 15_000,
  retryMs: 500,
  onExpired: 'reset', // a tab that was away too long gets a `reset` event instead of a 416
  rateLimit: { burst: 20, perSecond: 2 },
  shed: { maxStreams: 5000, maxHeapRatio: 0.85 },
});
const streamOptions: SubscribeOptions = { route: '/events' };
const metrics = metricsHandler();
const health = healthHandler({ shed: { maxHeapRatio: 0.85 } });
const open = new Set<http.ServerResponse>();

function cutAll(): number {
  let n = 0;
  for (const res of open) {
    if (res.headersSent && !res.destroyed) {
      res.socket?.destroy(); // a network cut, as a proxy or a phone switching networks would do
      n++;
    }
  }
  return n;
}

function readJson(req: http.IncomingMessage, limit = 16 * 1024): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
      if (body.length > limit) reject(new Error('body too large'));
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(body || '{}') as Record<string, unknown>);
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

const ROOM = /^[a-z0-9-]{1,32}$/;

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const room = url.searchParams.get('room') ?? 'lobby';
  if (url.pathname === '/events' && req.method === 'GET') {
    if (!ROOM.test(room)) return void res.writeHead(400).end('bad room');
    open.add(res);
    res.on('close', () => open.delete(res));
    await hub.subscribe(req, res, `room:${room}`, streamOptions);
    return;
  }
  if (url.pathname === '/messages' && req.method === 'POST') {
    try {
      const body = await readJson(req);
      const text = String(body.text ?? '').slice(0, 500);
      const user = String(body.user ?? 'anon').slice(0, 32);
      const r = String(body.room ?? 'lobby');
      if (!ROOM.test(r) || text === '') return void res.writeHead(400).end('bad message');
      const id = await hub.publish(`room:${r}`, { event: 'message', data: { user, text, at: Date.now(), via: process.env.PORT ?? '' } });
      res.writeHead(201, { 'Content-Type': 'application/json' }).end(JSON.stringify({ id }));
    } catch {
      res.writeHead(400).end('bad request');
    }
    return;
  }
  if (url.pathname === '/cut' && req.method === 'POST') {
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ cut: cutAll() }));
    return;
  }
  if (url.pathname === '/metrics') return metrics(req, res);
  if (url.pathname === '/healthz') return health(req, res);
  if (url.pathname === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page);
    return;
  }
  res.writeHead(404).end();
});

const cutEvery = Number(process.env.CUT_EVERY_MS ?? 0);
const cutTimer = cutEvery > 0 ? setInterval(cutAll, cutEvery) : null;
cutTimer?.unref();

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  console.log(`chat on http://127.0.0.1:${port}  (store: ${store.kind}; metrics http://127.0.0.1:${port}/metrics; health http://127.0.0.1:${port}/healthz?probe=stream)`);
});

function shutdown(): void {
  console.log('closing: streams end, clients reconnect elsewhere');
  void hub.close().finally(() => server.close(() => process.exit(0)));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 3000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
