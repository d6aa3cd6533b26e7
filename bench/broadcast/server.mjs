// One benchmark server process: `node --expose-gc server.mjs <impl> [redisUrl]`.
// impl: ceiling | bare | streamscope | better-sse | fastify-sse | ws (broadcast), replay-memory | replay-redis (replay).
// `ceiling` is no implementation: it writes one pre-built chunk (the bare loop's bytes on the wire) straight to
// every socket, the least a server can do per event, so its delivered/s is what the harness can measure at all.
// Talks to run.mjs over IPC; the HTTP port is sent once listening.
import http from 'node:http';
import { setImmediate as tick } from 'node:timers/promises';

// `streamscope@/path/to/dist/esm/index.js`: the hub of another build (an A/B of two commits in one run)
const [impl, distOverride] = process.argv[2].split('@');
const redisUrl = process.argv[3];
const dist = distOverride ? new URL('file://' + distOverride).href : new URL('../../dist/esm/index.js', import.meta.url).href;

const responses = new Set();
let broadcast; // (k) => void: one event to every subscriber
let count = () => responses.size;
/** Whether the server still has events to hand to the sockets beside what they queue (streamscope's walk). */
let busy = () => false;
/** Socket writes streamscope's fan-out made so far (its walk's count; 0 elsewhere). */
let fanWrites = () => 0;
let handler;
let hub;

let server = http.createServer((req, res) => handler(req, res));

if (impl === 'ceiling') {
  const sockets = new Set();
  handler = (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.flushHeaders();
    const sock = res.socket;
    sockets.add(sock);
    responses.add(res);
    res.on('close', () => {
      responses.delete(res);
      sockets.delete(sock);
    });
  };
  broadcast = (k) => {
    const frame = Buffer.from(`id: ${k}\ndata: BCAST ${k}\n\n`);
    const chunk = Buffer.concat([Buffer.from(frame.length.toString(16) + '\r\n'), frame, Buffer.from('\r\n')]);
    for (const sock of sockets) sock.write(chunk);
  };
} else if (impl === 'bare') {
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
  // The hub's fan-out walks the subscribers over several turns (src/runtime/hub/fanout.ts): the round is handed
  // off once that walk is over too. A peek at internals, for this benchmark only (undefined on a build before it).
  busy = () => hub.channels?.get('b')?.walking === true;
  fanWrites = () => hub.channels?.get('b')?.stats?.written ?? 0;
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
} else if (impl === 'fastify-sse') {
  const { default: Fastify } = await import('fastify');
  const { default: fastifySse } = await import('@fastify/sse');
  const app = Fastify({ logger: false });
  await app.register(fastifySse, { heartbeatInterval: 0 });
  const replies = new Set();
  app.get('/events', { sse: { kind: 'only', heartbeat: false } }, async (req, reply) => {
    reply.sse.keepAlive();
    reply.sse.sendHeaders();
    reply.raw.flushHeaders();
    replies.add(reply);
    responses.add(reply.raw);
    reply.sse.onClose(() => {
      replies.delete(reply);
      responses.delete(reply.raw);
    });
  });
  await app.ready();
  server = app.server;
  count = () => replies.size;
  broadcast = (k) => {
    const message = { id: String(k), data: `BCAST ${k}` };
    for (const reply of replies) reply.sse.send(message).catch(() => {});
  };
} else if (impl === 'ws') {
  // A hand-written broadcast over ws: one send() per client per event, as its README shows.
  const { WebSocketServer } = await import('ws');
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  handler = (req, res) => {
    res.writeHead(426);
    res.end();
  };
  wss.on('connection', (ws) => {
    responses.add(ws._socket);
    ws.on('close', () => responses.delete(ws._socket));
  });
  count = () => wss.clients.size;
  broadcast = (k) => {
    const data = `BCAST ${k}`;
    for (const ws of wss.clients) ws.send(data);
  };
} else {
  throw new Error(`unknown impl ${impl}`);
}

function heap() {
  for (let i = 0; i < 4; i++) global.gc();
  return process.memoryUsage().heapUsed;
}

async function flushed(turn) {
  for (;;) {
    let queued = 0;
    for (const res of responses) queued += res.writableLength;
    if (queued === 0 && !busy()) return;
    await turn();
  }
}

server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
  process.send({ type: 'listening', port: server.address().port });
});

process.on('message', async (m) => {
  if (m.cmd === 'heap') process.send({ type: 'heap', heapUsed: heap(), subscribers: count() });
  else if (m.cmd === 'count') process.send({ type: 'count', subscribers: count() });
  else if (m.cmd === 'broadcast') {
    const w0 = fanWrites();
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    // the longest event-loop turn of the round: from one of these immediates to the next (a publish's own
    // work, whatever the server runs in that turn, I/O), i.e. how long the loop was held at most
    let maxTurn = 0;
    let last = t0;
    let maxTurnCpu = 0;
    let lastCpu = process.cpuUsage();
    const turn = async () => {
      await tick();
      const now = performance.now();
      if (now - last > maxTurn) maxTurn = now - last;
      last = now;
      const c = process.cpuUsage(lastCpu);
      lastCpu = process.cpuUsage();
      if (c.user + c.system > maxTurnCpu) maxTurnCpu = c.user + c.system;
    };
    for (let k = 0; k < m.events; k++) {
      broadcast(m.base + k);
      await turn(); // let the event loop breathe between events, as a real service would
    }
    const handedOff = performance.now() - t0;
    await flushed(turn);
    const cpu = process.cpuUsage(cpu0);
    process.send({ type: 'broadcast', handedOffMs: handedOff, flushedMs: performance.now() - t0, cpuUs: cpu.user + cpu.system, maxTurnMs: maxTurn, maxTurnCpuMs: maxTurnCpu / 1000, fanWrites: fanWrites() - w0 });
  } else if (m.cmd === 'fill') {
    const t0 = performance.now();
    const ids = [];
    for (let i = 0; i < m.events; i++) ids.push(await hub.publish('b', { data: `BCAST ${i} ${'x'.repeat(m.size ?? 64)}` }));
    process.send({ type: 'filled', first: ids[0], last: ids[ids.length - 1], ms: performance.now() - t0, heapUsed: heap() });
  } else if (m.cmd === 'exit') {
    setTimeout(() => process.exit(0), 2000); // upgraded (ws) sockets are not the HTTP server's to close
    for (const r of responses) r.destroy?.();
    server.closeAllConnections();
    if (hub) await hub.close();
    server.close(() => process.exit(0));
  }
});
