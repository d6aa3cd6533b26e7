// Server child of the core benchmark. One process = one variant x one scenario.
// Talks to the harness over IPC: sends {type:'ready', port}, answers {type:'cpu'|'heap'|'check'|'sweep'}.
//
// env: BENCH_VARIANT  bare | ours | otel | otel+ours | ours+trackAsync | ours+captureStacks | ours+guards | ours+heapSampling | ours+cpuProfiler | ours+otelMetrics
//      BENCH_SCENARIO flood | short | idle | sweep
//      BENCH_LIB      absolute path of dist/esm/index.js (or src/index.ts under tsx for 'sweep')
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { EVENT } from './event.mjs';

const variant = process.env.BENCH_VARIANT;
setTimeout(() => process.exit(3), 240_000).unref();
const scenario = process.env.BENCH_SCENARIO;
const require = createRequire(import.meta.url);

/** The no-op exporter of the OpenTelemetry peer: counts what the BatchSpanProcessor hands it. */
let exportedSpans = 0;
const noopExporter = {
  export(spans, done) {
    exportedSpans += spans.length;
    done({ code: 0 });
  },
  shutdown: () => Promise.resolve(),
  forceFlush: () => Promise.resolve(),
};

if (variant.startsWith('otel')) {
  // Set up before node:http is required, the way the OpenTelemetry docs ask for.
  const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
  const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
  const { registerInstrumentations } = require('@opentelemetry/instrumentation');
  const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
  const provider = new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(noopExporter)] });
  provider.register();
  registerInstrumentations({ instrumentations: [new HttpInstrumentation()] });
}
if (variant === 'ours+otelMetrics') {
  // An app that registered an OpenTelemetry MeterProvider: streamscope also records its metrics as OTel
  // instruments. The reader collects every second into an exporter that drops the data.
  const { metrics } = require('@opentelemetry/api');
  const { MeterProvider, PeriodicExportingMetricReader, AggregationTemporality } = require('@opentelemetry/sdk-metrics');
  const exporter = {
    export: (_batch, done) => done({ code: 0 }),
    selectAggregationTemporality: () => AggregationTemporality.CUMULATIVE,
    forceFlush: () => Promise.resolve(),
    shutdown: () => Promise.resolve(),
  };
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 1000 })] }));
}
const http = require('http');

let lib = null;
let detectors = null;
if (variant !== 'bare' && variant !== 'otel') {
  lib = await import(pathToFileURL(process.env.BENCH_LIB).href);
  if (process.env.BENCH_DETECTORS) detectors = await import(pathToFileURL(process.env.BENCH_DETECTORS).href);
}

/** Writes in a row before the flood producer yields a turn even if write() never returned false. */
const BATCH = 256;

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

const SSE_HEAD = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

// The harness runs one variant at a time: the others' producers wait at this gate, so an idle server
// costs nothing while another is measured (pausing the clients instead would leave megabytes of
// kernel socket buffers for the producers to fill after the pause).
let running = scenario !== 'flood';
let gate = null;
let openGate = null;
function waitGate() {
  if (gate === null) gate = new Promise((resolve) => (openGate = resolve));
  return gate;
}

/** (a) write until write() returns false, then await drain; never stop before the client leaves. */
async function flood(req, res) {
  res.writeHead(200, SSE_HEAD);
  let open = true;
  res.once('close', () => {
    open = false;
  });
  while (open) {
    let n = 0;
    let ok = true;
    while (open && ok && n < BATCH) {
      ok = res.write(EVENT);
      n++;
    }
    if (!open) break;
    if (!ok) await drainOrClose(res);
    else await yieldTurn();
    if (!running) await waitGate();
  }
}

/** (b) a short stream: 10 chunks, one event-loop turn between them. */
async function short(req, res) {
  res.writeHead(200, SSE_HEAD);
  for (let i = 0; i < 9; i++) {
    res.write(EVENT);
    await yieldTurn();
  }
  res.end(EVENT);
}

/** (c) an idle open stream: headers and one comment, then nothing until the client leaves. */
let idleOpen = 0;
function idle(req, res) {
  res.writeHead(200, SSE_HEAD);
  res.write(': open\n\n');
  idleOpen++;
  res.once('close', () => {
    idleOpen--;
  });
}

/** (sweep) like idle, but the handler holds the stream until told to let go (a producer that never stops). */
const holders = new Set();
function held(req, res) {
  idle(req, res);
  return new Promise((resolve) => holders.add(resolve));
}

const handlers = { flood, short, idle, sweep: held };
let handler = handlers[scenario];
if (lib !== null) {
  const options = { route: '/' + scenario };
  if (variant.endsWith('+trackAsync')) options.trackAsync = true;
  if (variant.endsWith('+captureStacks')) options.captureStacks = true;
  if (variant.endsWith('+guards')) {
    // every guard on, sized so that healthy load never trips them: the cost of the checks alone
    Object.assign(options, { maxBufferedBytes: 64 * 1024 * 1024, stalledAction: 'destroy', zombieAction: 'throw', deadPeerMs: 60_000 });
  }
  // issue 12: the agent keeps V8's sampling heap profiler running (pprof's default interval, 512 KiB)
  if (variant.endsWith('+heapSampling')) lib.startAgent({ heapSampling: Number(process.env.BENCH_HEAP_SAMPLING ?? 524288) });
  if (variant.endsWith('+cpuProfiler')) lib.startAgent({ cpuProfiler: true });
  if (scenario === 'sweep') options.danglingAfterMs = Number(process.env.BENCH_DANGLING_MS ?? 3000);
  handler = lib.instrument(handler, options);
}

let findings = [];
if (lib !== null && scenario === 'sweep') {
  lib.onFinding((f) => findings.push({ t: performance.now(), kind: f.kind }));
}

const server = http.createServer(handler);
server.keepAliveTimeout = 60_000;
server.requestTimeout = 0;
server.headersTimeout = 60_000;
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  process.send({ type: 'ready', port: server.address().port, pid: process.pid });
});

async function startedTotal() {
  if (lib === null) return null;
  const { register } = await import('prom-client');
  const m = register.getSingleMetric('stream_started_total');
  if (!m) return null;
  const { values } = await m.get();
  return values.reduce((a, v) => a + v.value, 0);
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function timeSweeps(n) {
  const t = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    detectors.sweep();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return { n, median: quantile(t, 0.5), p95: quantile(t, 0.95), max: t[t.length - 1] };
}

process.on('message', async (msg) => {
  try {
    if (msg.type === 'cpu') {
      const u = process.cpuUsage();
      process.send({ id: msg.id, cpuUs: u.user + u.system, userUs: u.user, t: performance.now() });
    } else if (msg.type === 'threads') {
      // Linux: CPU clock ticks per thread (main thread, V8 GC and compiler helpers, libuv).
      const fs = await import('node:fs');
      const threads = {};
      for (const tid of fs.readdirSync('/proc/self/task')) {
        try {
          const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
          const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
          const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          const key = Number(tid) === process.pid ? 'main' : name;
          const t = threads[key] ?? (threads[key] = { utime: 0, stime: 0 });
          t.utime += Number(f[11]);
          t.stime += Number(f[12]);
        } catch {
          /* thread gone */
        }
      }
      process.send({ id: msg.id, threads });
    } else if (msg.type === 'heap') {
      for (let i = 0; i < 4; i++) {
        global.gc();
        await yieldTurn();
      }
      global.gc();
      const m = process.memoryUsage();
      process.send({ id: msg.id, heapUsed: m.heapUsed, rss: m.rss, open: idleOpen, tracked: lib ? lib.streams().length : null });
    } else if (msg.type === 'check') {
      process.send({ id: msg.id, started: await startedTotal(), exportedSpans, open: idleOpen });
    } else if (msg.type === 'sweep') {
      // Runs a few sweeps first so the function is optimized, as it is after minutes in production.
      timeSweeps(20);
      const tracker = globalThis[Symbol.for('streamscope.tracker')];
      const r = timeSweeps(msg.n ?? 100);
      process.send({ id: msg.id, ...r, open: idleOpen, tracked: lib.streams().length, openInTracker: tracker?.open.size, lingering: tracker?.lingering.size });
    } else if (msg.type === 'findings') {
      // Findings raised by one sweep arrive back to back; sweeps are SWEEP_MS apart. Group by gaps.
      const groups = [];
      let g = null;
      for (const f of findings) {
        if (g === null || f.t - g.last > 20) {
          g = { count: 0, first: f.t, last: f.t };
          groups.push(g);
        }
        g.count++;
        g.last = f.t;
      }
      findings = [];
      process.send({ id: msg.id, groups: groups.map((x) => ({ count: x.count, ms: x.last - x.first })) });
    } else if (msg.type === 'run') {
      running = true;
      if (openGate !== null) openGate();
      gate = null;
      openGate = null;
      const u = process.cpuUsage();
      process.send({ id: msg.id, cpuUs: u.user + u.system, t: performance.now() });
    } else if (msg.type === 'hold') {
      running = false;
      process.send({ id: msg.id });
    } else if (msg.type === 'settle') {
      for (const r of holders) r();
      holders.clear();
      process.send({ id: msg.id });
    } else if (msg.type === 'prof-start') {
      // For bench/core/profile.mjs: profile the steady state only, not start-up.
      const { Session } = await import('node:inspector');
      globalThis.benchSession = new Session();
      const post = (m, p) => new Promise((res, rej) => globalThis.benchSession.post(m, p, (e, r) => (e ? rej(e) : res(r))));
      globalThis.benchPost = post;
      globalThis.benchSession.connect();
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: msg.intervalUs ?? 200 });
      await post('Profiler.start');
      process.send({ id: msg.id });
    } else if (msg.type === 'prof-stop') {
      const { profile } = await globalThis.benchPost('Profiler.stop');
      const fs = await import('node:fs');
      fs.writeFileSync(msg.file, JSON.stringify(profile));
      globalThis.benchSession.disconnect();
      process.send({ id: msg.id });
    } else if (msg.type === 'exit') {
      process.exit(0);
    }
  } catch (err) {
    process.send({ id: msg.id, error: String(err?.stack ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
