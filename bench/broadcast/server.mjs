// One benchmark server process: `node --expose-gc server.mjs <impl> [redisUrl]`.
// impl: bare | streamscope | better-sse (broadcast), replay-memory | replay-redis (replay).
// Talks to run.mjs over IPC; the HTTP port is sent once listening.
import http from 'node:http';
import { setImmediate as tick } from 'node:timers/promises';

const impl = process.argv[2];
const redisUrl = process.argv[3];
const dist = new URL('../../dist/esm/index.js', import.meta.url).href;

const responses = new Set();
let broadcast; // (k) => void: one event to every subscriber
let count = () => responses.size;
let handler;
let hub;

if (impl === 'bare') {
  handler = (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.flushHeaders();
    responses.add(res);
    res.on('close', () => responses.delete(res));
  };
  broadcast = (k) => {
    const frame = `id: ${k}\ndata: BCAST ${k}\n\n`;
    for (const res of responses) res.write(frame);
  };
} else if (impl === 'streamscope' || impl.startsWith('replay-')) {
  const { createHub, memoryStore, redisStore } = await import(dist);
  const store = impl === 'replay-redis' ? redisStore({ url: redisUrl, maxLen: 20000, keyPrefix: `bench${process.pid}:` }) : memoryStore({ maxEvents: 20000 });
  hub = createHub({ store, heartbeatMs: 0, route: '/events' });
  handler = (req, res) => {
    responses.add(res);
    res.on('close', () => responses.delete(res));
    void hub.subscribe(req, res, 'b');
  };
  count = () => hub.subscribers('b');
  broadcast = (k) => {
    void hub.publish('b', `BCAST ${k}`);
  };
} else if (impl === 'better-sse') {
  const { createSession, createChannel } = await import('better-sse');
  const channel = createChannel();
  handler = async (req, res) => {
    responses.add(res);
    res.on('close', () => responses.delete(res));
    const session = await createSession(req, res, { keepAlive: null, retry: null });
    channel.register(session);
  };
  count = () => channel.sessionCount;
  broadcast = (k) => {
    channel.broadcast(`BCAST ${k}`, 'message');
  };
} else {
  throw new Error(`unknown impl ${impl}`);
}

function heap() {
  for (let i = 0; i < 4; i++) global.gc();
  return process.memoryUsage().heapUsed;
}

async function flushed() {
  for (;;) {
    let queued = 0;
    for (const res of responses) queued += res.writableLength;
    if (queued === 0) return;
    await tick();
  }
}

const server = http.createServer(handler);
server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
  process.send({ type: 'listening', port: server.address().port });
});

process.on('message', async (m) => {
  if (m.cmd === 'heap') process.send({ type: 'heap', heapUsed: heap(), subscribers: count() });
  else if (m.cmd === 'count') process.send({ type: 'count', subscribers: count() });
  else if (m.cmd === 'broadcast') {
    const t0 = performance.now();
    for (let k = 0; k < m.events; k++) {
      broadcast(m.base + k);
      await tick(); // let the event loop breathe between events, as a real service would
    }
    const handedOff = performance.now() - t0;
    await flushed();
    process.send({ type: 'broadcast', handedOffMs: handedOff, flushedMs: performance.now() - t0 });
  } else if (m.cmd === 'fill') {
    const t0 = performance.now();
    const ids = [];
    for (let i = 0; i < m.events; i++) ids.push(await hub.publish('b', { data: `BCAST ${i} ${'x'.repeat(m.size ?? 64)}` }));
    process.send({ type: 'filled', first: ids[0], last: ids[ids.length - 1], ms: performance.now() - t0, heapUsed: heap() });
  } else if (m.cmd === 'exit') {
    server.closeAllConnections();
    if (hub) await hub.close();
    server.close(() => process.exit(0));
  }
});
