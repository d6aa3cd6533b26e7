#!/usr/bin/env node
// The per-stream cost of instrumentation without the network: scenario (b)'s short stream (writeHead, 9 writes
// with a setImmediate turn between them, end) on real http.ServerResponse objects over a Duplex that discards
// what it is given, so that a run measures JavaScript and nothing of the kernel or the load generator. Far less
// noisy than (b) itself (a few tenths of a µs between runs against several µs), and it reproduced (b)'s ratio;
// use it to find and compare costs, and (b) to state them.
//
//   node bench/core/inproc.mjs [N] [lib ...]   lib: a path to a built dist/esm/index.js, or "bare" (default:
//                                              bare and this checkout's dist); each is a child process, run
//                                              3 times in turn; prints the median µs of CPU per stream.
//                                              `path#{"writeGaps":true}` adds options to instrument();
//                                              `path+otelMetrics` registers an OpenTelemetry MeterProvider first
//                                              (variant ours+otelMetrics: a reader collecting every second);
//                                              INPROC_WRITES=200 writes per stream instead of 9.
//                                              Named variants of this checkout's dist, as in bench/core/server.mjs:
//                                              `ours`, `ours+trackAsync`, `ours+captureStacks` (e.g.
//                                              `node bench/core/inproc.mjs 10000 bare ours ours+trackAsync`).
//                                              Bench-only floors of `trackAsync` (Node's share of its cost, no
//                                              streamscope): `bare+noopHook` enables an async_hooks hook whose
//                                              `init` does nothing (Node then runs its promise hooks too);
//                                              `bare+noopHookNP` the same made with `trackPromises: false` (honoured
//                                              by Node 24 and 26, ignored by 20 and 22); `bare+als` runs the handler
//                                              inside an AsyncLocalStorage's `run` (on Node 20 that is itself an
//                                              `init` hook; on Node 24 AsyncContextFrame). They combine:
//                                              `bare+noopHookNP+als`.
//
//   node bench/core/inproc.mjs --instructions [N] [lib ...] [--repeat=k] [--jobs=j] [--dist=path]
//                                              Instructions per stream instead of µs (deterministic: it does not
//                                              move with the machine's load). Each lib's child runs once (k times
//                                              with --repeat; j at a time with --jobs) under `valgrind
//                                              --tool=callgrind --cache-sim=no --branch-sim=no` (the cheapest
//                                              callgrind: Ir only; valgrind runs one thread at a time and counts
//                                              every thread, so V8's GC and compiler work is in the figure): 20,000
//                                              streams of warm-up (INPROC_WARMUP), then N (default 2,000) between
//                                              two calls of process.constrainedMemory(), before each of which
//                                              callgrind dumps its counters (--dump-before=node::GetConstrainedMemory*):
//                                              the second dump / N is the figure, startup and exit excluded. Prints
//                                              the median per lib, bare / lib and the difference; --dist=path puts
//                                              the named variants on another build (another commit's dist/esm/index.js).
//                                              The children run with `--predictable` (INPROC_NODE_FLAGS replaces it):
//                                              without it the same child moved 14 % from run to run (N=1000 vs 3000,
//                                              3 runs of bare); with it 0.04 % (bare) and 0.26 % (ours), 3 runs each.
//                                              What --predictable changes against a server: V8 runs no background
//                                              thread (the optimizing compiler and the GC's parallel and concurrent
//                                              phases run on the main thread: the same work, without the threads'
//                                              coordination, so a little less of it), no memory reducer (a GC that a
//                                              timer starts when the process looks idle), and a fixed random seed. The
//                                              young generation still grows and shrinks as V8 decides (that needs
//                                              --predictable-gc-schedule, not used). Timers driven by the clock run on
//                                              the stream count instead (the tracker's sweep, an OpenTelemetry reader:
//                                              `simulatedIntervals`), as if each stream took 100 µs (INPROC_SIM_US);
//                                              a due callback runs from a microtask after the stream's end.
//                                              The default window (2,000 streams after 20,000) holds the reader's
//                                              collection at 2 s: one per 2,000 streams, five times its rate of one
//                                              per 10,000. For ours+otelMetrics at the rate, measure 10,000 streams
//                                              after INPROC_WARMUP=25000 (one collection and four sweeps in the window).
//                                              INPROC_KEEP=dir keeps the callgrind files (callgrind_annotate; add
//                                              --perf-basic-prof to INPROC_NODE_FLAGS to name the JIT code by its
//                                              /tmp/perf-PID.map).
// The socket counts what it is given in `bytesWritten`, as a net.Socket does (the wire checks read it).
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import http from 'node:http';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
/** Node flags of the instruction mode's children (INPROC_NODE_FLAGS replaces them; empty for none): see the header. */
const DETERMINISTIC_FLAGS = '--predictable';
const EVENT = 'data: {"i":1,"t":"hello world, a token"}\n\n';
const SSE_HEAD = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

/**
 * Instruction mode: `setInterval`'s callbacks (the tracker's sweep every 250 ms, an OpenTelemetry reader's
 * collection every second) fire on the count of streams, as if each stream took INPROC_SIM_US µs (default 100, about
 * (b)'s bare request), not on the clock. Under callgrind a stream takes about 50 times as long, so on the clock they
 * would fire about 50 times as often per stream, and at moments that move from run to run.
 */
const simulatedIntervals = {
  now: 0,
  stepMs: 0.1,
  /** The earliest `due` of the timers (Infinity with none): `tick` compares against it and does nothing else. */
  nextDue: Infinity,
  timers: new Map(),
  install(stepUs) {
    const realSet = globalThis.setInterval;
    const realClear = globalThis.clearInterval;
    const sim = simulatedIntervals;
    sim.stepMs = stepUs / 1000;
    globalThis.setInterval = function setInterval(fn, ms, ...args) {
      const t = realSet(() => {}, 2 ** 31 - 1);
      const every = Math.max(1, Number(ms) || 1);
      sim.timers.set(t, { fn, every, args, due: sim.now + every });
      sim.nextDue = Math.min(sim.nextDue, sim.now + every);
      return t;
    };
    globalThis.clearInterval = function clearInterval(t) {
      sim.timers.delete(t);
      realClear(t);
    };
  },
  /**
   * Called after each stream; small and the same at every call, so that V8 compiles it once. The due callbacks run
   * from a microtask (`fire`), as a real timer's run from the event loop, not inline: called from here, a callback
   * was inlined into the loop of the harness, and one that runs once per 10,000 streams (the OpenTelemetry reader's
   * collection) had `tick` deoptimized and compiled again, some 17 million instructions of the harness's own in the
   * measured window where it fell (Node 20; about 8,700 per stream of 2,000).
   */
  tick: () => {
    const sim = simulatedIntervals;
    sim.now += sim.stepMs;
    if (sim.now >= sim.nextDue) sim.fire();
  },
  fire() {
    const sim = simulatedIntervals;
    let next = Infinity;
    for (const [t, e] of sim.timers) {
      while (e.due <= sim.now) {
        e.due += e.every;
        queueMicrotask(() => {
          if (sim.timers.has(t)) e.fn.apply(t, e.args);
        });
      }
      next = Math.min(next, e.due);
    }
    sim.nextDue = next;
  },
};

if (process.env.INPROC_CHILD) {
  const N = Number(process.env.INPROC_N);
  // INPROC_WRITES: writes per stream before end (default 9, scenario (b)'s); more to weigh a per-write cost
  const WRITES = Number(process.env.INPROC_WRITES || 9);
  async function short(req, res) {
    res.writeHead(200, SSE_HEAD);
    for (let i = 0; i < WRITES; i++) {
      res.write(EVENT);
      await new Promise((r) => setImmediate(r));
    }
    res.end(EVENT);
  }
  let handler = short;
  // the bench-only floors (see the header): bare with a no-op hook and/or an AsyncLocalStorage run per handler
  const floors = (process.env.INPROC_FLOORS || '').split('+').filter(Boolean);
  if (floors.includes('noopHook') || floors.includes('noopHookNP')) {
    const { createHook } = await import('node:async_hooks');
    const opts = { init() {} };
    if (floors.includes('noopHookNP')) opts.trackPromises = false;
    createHook(opts).enable();
  }
  if (floors.includes('als')) {
    const { AsyncLocalStorage } = await import('node:async_hooks');
    const als = new AsyncLocalStorage();
    const store = { id: 0 };
    handler = (req, res) => als.run(store, short, req, res);
  }
  if (process.env.INPROC_CALLGRIND) simulatedIntervals.install(Number(process.env.INPROC_SIM_US || 100));
  if (process.env.INPROC_OTEL_METRICS) {
    // as bench/core/server.mjs's ours+otelMetrics: a MeterProvider whose reader collects every second into nothing
    const { metrics } = await import('@opentelemetry/api');
    const { MeterProvider, PeriodicExportingMetricReader, AggregationTemporality } = await import('@opentelemetry/sdk-metrics');
    const exporter = {
      export: (_batch, done) => done({ code: 0 }),
      selectAggregationTemporality: () => AggregationTemporality.CUMULATIVE,
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 1000 })] }));
  }
  if (process.env.INPROC_CHILD !== 'bare') {
    const opts = JSON.parse(process.env.INPROC_OPTS || '{}');
    handler = (await import(process.env.INPROC_CHILD)).instrument(short, { route: '/short', ...opts });
  }
  let written = 0;
  const sock = new Duplex({
    write: (c, e, cb) => ((written += c.length), cb()),
    writev: (cs, cb) => {
      for (const { chunk } of cs) written += chunk.length;
      cb();
    },
    read() {},
  });
  Object.defineProperty(sock, 'bytesWritten', { get: () => written + sock.writableLength });
  sock.setTimeout = () => sock;
  sock.remoteAddress = '127.0.0.1';
  const one = async () => {
    const req = new http.IncomingMessage(sock);
    Object.assign(req, { method: 'GET', url: '/short', httpVersionMajor: 1, httpVersionMinor: 1, headers: {} });
    const res = new http.ServerResponse(req);
    res.shouldKeepAlive = true;
    res.assignSocket(sock);
    await handler(req, res);
    await new Promise((r) => res.once('finish', r));
    res.detachSocket(sock);
    res.emit('close');
  };
  // instruction mode: 20,000 streams of warm-up by default, not 3,000: the functions called once per stream reach
  // TurboFan only after some 10,000-20,000 streams (--trace-opt), and a compilation inside the measured streams
  // counts millions of instructions (it would be paid once in a server's life)
  const WARMUP = Number(process.env.INPROC_WARMUP || 20000);
  if (process.env.INPROC_CALLGRIND) {
    // instruction mode: the same warm-up, then N streams, once, between two calls of a native function that nothing
    // else calls (process.constrainedMemory, node::GetConstrainedMemory), before each of which callgrind dumps its
    // counts (--dump-before): the second dump holds the N streams' instructions and nothing else. Time-driven
    // work runs on the stream count (see `simulatedIntervals`).
    const tick = simulatedIntervals.tick;
    for (let i = 0; i < WARMUP; i++) {
      await one();
      tick();
    }
    process.constrainedMemory();
    for (let i = 0; i < N; i++) {
      await one();
      tick();
    }
    process.constrainedMemory();
    process.exit(0);
  }
  for (let i = 0; i < 3000; i++) await one();
  const rounds = [];
  for (let k = 0; k < 7; k++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < N; i++) await one();
    const c = process.cpuUsage(c0);
    rounds.push((c.user + c.system) / N);
  }
  rounds.sort((a, b) => a - b);
  process.stdout.write(String(rounds[3]));
} else {
  const argv = process.argv.slice(2);
  const flag = (name) => {
    const a = argv.find((x) => x === `--${name}` || x.startsWith(`--${name}=`));
    return a === undefined ? undefined : a.includes('=') ? a.slice(a.indexOf('=') + 1) : '';
  };
  const instructions = flag('instructions') !== undefined || Boolean(process.env.INPROC_CALLGRIND);
  const [nArg, ...libArgs] = argv.filter((x) => !x.startsWith('--'));
  // --dist=path: the named variants' build (default: this checkout's dist), e.g. another commit's, for a before/after
  const ours = path.resolve(flag('dist') || path.join(path.dirname(self), '..', '..', 'dist', 'esm', 'index.js'));
  const NAMED = { ours, 'ours+trackAsync': `${ours}#{"trackAsync":true}`, 'ours+captureStacks': `${ours}#{"captureStacks":true}` };
  const libs = libArgs.length > 0 ? libArgs : ['bare', ours];
  const repeat = Number(flag('repeat') ?? (instructions ? 1 : 3));
  const childEnv = (l, extra) => {
    const floors = /^bare\+/.test(l) ? l.slice('bare+'.length) : '';
    if (floors !== '') return { ...process.env, INPROC_CHILD: 'bare', INPROC_OPTS: '', INPROC_OTEL_METRICS: '', INPROC_FLOORS: floors, ...extra };
    const [named, opts = ''] = (NAMED[l] ?? l).split('#');
    const otelMetrics = named.endsWith('+otelMetrics');
    const spec = otelMetrics ? named.slice(0, -'+otelMetrics'.length) : named;
    const file = NAMED[spec]?.split('#')[0] ?? spec;
    const lib = file === 'bare' ? 'bare' : path.resolve(file);
    return { ...process.env, INPROC_CHILD: lib, INPROC_OPTS: opts, INPROC_OTEL_METRICS: otelMetrics ? '1' : '', ...extra };
  };
  const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
  if (!instructions) {
    const N = Number(nArg ?? 10000);
    const runs = new Map(libs.map((l) => [l, []]));
    for (let k = 0; k < repeat; k++) {
      for (const l of libs) {
        const out = execFileSync(process.execPath, [self], { env: childEnv(l, { INPROC_N: String(N) }), encoding: 'utf8' });
        runs.get(l).push(Number(out));
      }
    }
    const base = runs.has('bare') ? med(runs.get('bare')) : undefined;
    for (const [l, a] of runs) {
      const m = med(a);
      const ratio = base === undefined ? '' : `  bare / this ${(base / m).toFixed(3)}  (+${(m - base).toFixed(2)} µs)`;
      console.log(`${l.padEnd(44)} ${m.toFixed(2)} µs per stream  [${a.map((x) => x.toFixed(2)).join(' ')}]${ratio}`);
    }
  } else {
    // Instructions per stream: each child once under callgrind; the instructions of its N measured streams (the
    // second of the dumps around them, all threads: V8's GC and compiler threads too) / N.
    const N = Number(nArg ?? 2000);
    const jobs = Number(flag('jobs') ?? 1);
    const keep = process.env.INPROC_KEEP;
    const dir = keep || fs.mkdtempSync(path.join(os.tmpdir(), 'inproc-callgrind-'));
    const nodeFlags = (process.env.INPROC_NODE_FLAGS ?? DETERMINISTIC_FLAGS).split(' ').filter(Boolean);
    const vgArgs = [
      '--tool=callgrind',
      '--cache-sim=no',
      '--branch-sim=no',
      '--dump-before=node::GetConstrainedMemory*',
      ...(process.env.INPROC_VALGRIND_ARGS ?? '').split(' ').filter(Boolean),
    ];
    const tasks = [];
    for (let k = 0; k < repeat; k++) {
      for (const l of libs) tasks.push({ l, k, out: path.join(dir, `${l.replace(/[^\w.+-]+/g, '_').slice(-60)}.${k}.callgrind`) });
    }
    const run = (t) =>
      new Promise((resolve, reject) => {
        const args = [...vgArgs, `--callgrind-out-file=${t.out}`, process.execPath, ...nodeFlags, self];
        execFile('valgrind', args, { env: childEnv(t.l, { INPROC_N: String(N), INPROC_CALLGRIND: '1' }), maxBuffer: 1 << 26 }, (err, _o, stderr) => {
          if (err) return reject(new Error(`valgrind ${t.l}: ${err.message}\n${stderr.slice(-2000)}`));
          const m = fs.existsSync(`${t.out}.2`) ? /^summary:\s*(\d+)/m.exec(fs.readFileSync(`${t.out}.2`, 'utf8')) : null;
          if (!m) return reject(new Error(`no second dump in ${t.out}.2`));
          t.ir = Number(m[1]) / N;
          if (!keep) for (const f of [t.out, `${t.out}.1`, `${t.out}.2`]) fs.rmSync(f, { force: true });
          resolve();
        });
      });
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.max(1, jobs) }, async () => {
        while (next < tasks.length) await run(tasks[next++]);
      }),
    );
    const per = new Map(libs.map((l) => [l, tasks.filter((t) => t.l === l).map((t) => t.ir)]));
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
    console.log(`instructions per stream (callgrind Ir, all threads, of ${N} streams after ${process.env.INPROC_WARMUP || 20000} of warm-up; node ${process.version}; flags: ${nodeFlags.join(' ') || 'none'})`);
    const base = per.has('bare') ? med(per.get('bare')) : undefined;
    for (const [l, a] of per) {
      const m = med(a);
      const spread = a.length > 1 ? `  spread ${(((Math.max(...a) - Math.min(...a)) / m) * 100).toFixed(2)} %` : '';
      const ratio = base === undefined ? '' : `  bare / this ${(base / m).toFixed(3)}  (+${Math.round(m - base)})`;
      console.log(`${l.padEnd(44)} ${Math.round(m)} per stream  [${a.map((x) => Math.round(x)).join(' ')}]${spread}${ratio}`);
    }
  }
}
