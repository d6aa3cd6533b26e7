// The soak's app: the demo's routes (examples/demo.ts, scaled down so that a stream lasts milliseconds, not
// seconds) and the resilient runtime (sse(), createHub with memoryStore and redisStore), on the BUILT package.
// Run by test/soak/run.mjs as `node --expose-gc test/soak/app.mjs`; prints `READY <port>` when listening.
//
// Env: SOAK_REDIS_URL (redis:// of the soak's redis-server), SOAK_NAME (a label in its lines).
import http from 'node:http';
import v8 from 'node:v8';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHub, instrument, memoryStore, metricsHandler, redisStore, sse, startAgent } from '../../dist/esm/index.js';

const unhandled = [];
process.on('unhandledRejection', (err) => {
  unhandled.push(String(err?.stack ?? err).slice(0, 500));
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// event-loop delay, 10 ms resolution: `run` since the driver's last `/loop?reset=run`, `window` since its last
// `/loop?reset=window` (the driver opens one around each `diag capture`: its max is the pause the capture caused,
// plus whatever the loaded machine adds)
const loop = { run: monitorEventLoopDelay({ resolution: 10 }), window: monitorEventLoopDelay({ resolution: 10 }) };
loop.run.enable();
loop.window.enable();
const ms = (ns) => Math.round(ns / 1e5) / 10;

const opts = { stallAfterMs: 2000, danglingAfterMs: 4000 };

function drainOrClose(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

// ---- the demo's routes ---------------------------------------------------------------------------------

const tokens = instrument(
  async (req, res) => {
    const ac = new AbortController();
    res.on('close', () => ac.abort());
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    const n = 3 + Math.floor(Math.random() * 10);
    for (let i = 0; i < n && !ac.signal.aborted; i++) {
      await sleep(Math.random() * 4);
      if (ac.signal.aborted) break;
      res.write(`id: ${i}\ndata: ${JSON.stringify({ token: 'tok' + i })}\n\n`);
    }
    if (!ac.signal.aborted) res.end('event: done\ndata: {}\n\n');
  },
  { ...opts, route: '/tokens' },
);

const exportRoute = instrument(
  async (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
    const rows = 50 + Math.floor(Math.random() * 200);
    for (let i = 0; i < rows; i++) {
      if (res.destroyed) return;
      const ok = res.write(JSON.stringify({ id: i, name: `row-${i}`, payload: 'x'.repeat(200) }) + '\n');
      if (!ok) await drainOrClose(res);
    }
    res.end();
  },
  { ...opts, route: '/export' },
);

const firehose = instrument(
  (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
    const chunk = Buffer.alloc(16 * 1024, 97);
    let sent = 0;
    const pump = () => {
      if (res.destroyed) return;
      for (let i = 0; i < 4; i++) res.write(chunk); // ignores backpressure: the bad example
      sent += 4 * chunk.length;
      if (sent >= 256 * 1024) res.end();
      else setTimeout(pump, 2);
    };
    pump();
  },
  { ...opts, route: '/firehose' },
);

/** Never listens to 'close', writes on a timer after the client left; bounded so the soak ends. */
const leaky = instrument(
  async (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    let i = 0;
    await new Promise((resolve) => {
      const timer = setInterval(() => {
        res.write(`data: ${i++} ${'y'.repeat(1024)}\n\n`);
        if (i > 40) {
          clearInterval(timer);
          res.end();
          resolve();
        }
      }, 5);
    });
  },
  { ...opts, route: '/leaky', trackAsync: true },
);

/** A handler that throws after it began the response (the app's error handler then ends it). */
const throwing = instrument(
  async (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.write('data: about to fail\n\n');
    await sleep(Math.random() * 5);
    throw new Error('handler failed (soak)');
  },
  { ...opts, route: '/throw' },
);

// ---- the resilient runtime ----------------------------------------------------------------------------

const sseOpts = { route: '/sse', heartbeatMs: 1000, maxBufferedBytes: 256 * 1024, drainTimeoutMs: 2000 };
const hubs = {
  mem: createHub({ store: memoryStore({ maxEvents: 200 }), route: '/hub/mem', heartbeatMs: 1000, drainTimeoutMs: 2000 }),
  redis: process.env.SOAK_REDIS_URL
    ? createHub({
        store: redisStore({ url: process.env.SOAK_REDIS_URL, keyPrefix: 'soak:', maxLen: 200, blockMs: 500, commandTimeoutMs: 1000 }),
        route: '/hub/redis',
        heartbeatMs: 1000,
        drainTimeoutMs: 2000,
      })
    : null,
};
const resetOpts = { onExpired: 'reset' };

const metrics = metricsHandler();

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const u = new URL(req.url ?? '/', 'http://x');
  const p = u.pathname;
  if (p === '/tokens') return void tokens(req, res);
  if (p === '/export') return void exportRoute(req, res);
  if (p === '/firehose') return void firehose(req, res);
  if (p === '/leaky') return void leaky(req, res);
  if (p === '/throw') {
    // the app's own error handling, as a framework's would: the error is the app's, the response ends
    return void throwing(req, res).catch(() => res.destroy());
  }
  if (p === '/sse') {
    const s = sse(req, res, sseOpts);
    const fail = u.searchParams.get('throw') === '1';
    // a producer that never stops by itself: it ends when send() rejects (client gone, cut, timeout)
    return void s.run(async (st) => {
      for (let i = 0; ; i++) {
        if (fail && i === 3) throw new Error('producer failed (soak)');
        await st.send({ data: 'x'.repeat(100) + i });
        if (i % 20 === 0) await sleep(1);
      }
    });
  }
  if (p.startsWith('/hub/')) {
    const hub = hubs[p.slice(5)];
    if (!hub) return json(res, 404, {});
    return void hub.subscribe(req, res, u.searchParams.get('ch') ?? 'c', u.searchParams.get('reset') === '1' ? resetOpts : undefined);
  }
  if (p.startsWith('/publish/')) {
    const hub = hubs[p.slice(9)];
    if (!hub) return json(res, 404, {});
    return void hub.publish(u.searchParams.get('ch') ?? 'c', { data: u.searchParams.get('d') ?? '' }).then(
      (id) => json(res, 200, { id }),
      (err) => json(res, 503, { code: err?.code ?? null, message: String(err?.message ?? err) }),
    );
  }
  if (p === '/metrics') return void metrics(req, res);
  if (p === '/gc') {
    for (let i = 0; i < 4; i++) globalThis.gc?.();
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_used_size]));
    return json(res, 200, { heapUsed: process.memoryUsage().heapUsed, spaces, gc: typeof globalThis.gc === 'function' });
  }
  if (p === '/stats') return json(res, 200, { unhandled, pid: process.pid });
  if (p === '/resources') {
    // what a leak of sockets, timers or files would grow: libuv handles and requests by type, open descriptors
    const active = {};
    for (const t of process.getActiveResourcesInfo()) active[t] = (active[t] ?? 0) + 1;
    let fds = null;
    try {
      fds = readdirSync('/proc/self/fd').length;
    } catch {}
    const m = process.memoryUsage();
    return json(res, 200, { rss: m.rss, heapUsed: m.heapUsed, external: m.external, handles: Object.values(active).reduce((a, n) => a + n, 0), active, fds });
  }
  if (p === '/loop') {
    const h = loop[u.searchParams.get('reset') ?? u.searchParams.get('read') ?? 'run'];
    if (!h) return json(res, 404, {});
    const body = { maxMs: ms(h.max), p99Ms: ms(h.percentile(99)), meanMs: ms(h.mean), count: h.count };
    if (u.searchParams.has('reset')) h.reset();
    return json(res, 200, body);
  }
  if (p === '/census') {
    // objects on the heap by constructor name (a heap snapshot, counted here): what grew, when the heap did
    for (let i = 0; i < 4; i++) globalThis.gc?.();
    const file = v8.writeHeapSnapshot(join(tmpdir(), `soak-${process.pid}-${Date.now()}.heapsnapshot`));
    const snap = JSON.parse(readFileSync(file, 'utf8'));
    unlinkSync(file);
    const f = snap.snapshot.meta.node_fields;
    const types = snap.snapshot.meta.node_types[0];
    const [ti, ni, si] = [f.indexOf('type'), f.indexOf('name'), f.indexOf('self_size')];
    const counts = {};
    for (let i = 0; i < snap.nodes.length; i += f.length) {
      const key = `${types[snap.nodes[i + ti]]}:${snap.strings[snap.nodes[i + ni]]}`.slice(0, 80);
      const c = (counts[key] ??= [0, 0]);
      c[0]++;
      c[1] += snap.nodes[i + si];
    }
    return json(res, 200, counts);
  }
  res.statusCode = 404;
  res.end();
});
server.keepAliveTimeout = 1000;

startAgent();
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void Promise.allSettled([hubs.mem.close(), hubs.redis?.close()]).then(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
