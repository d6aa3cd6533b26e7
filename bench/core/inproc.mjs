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
// The socket counts what it is given in `bytesWritten`, as a net.Socket does (the wire checks read it).
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const EVENT = 'data: {"i":1,"t":"hello world, a token"}\n\n';
const SSE_HEAD = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

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
  const [nArg, ...libArgs] = process.argv.slice(2);
  const N = Number(nArg ?? 10000);
  const ours = path.join(path.dirname(self), '..', '..', 'dist', 'esm', 'index.js');
  const NAMED = { ours, 'ours+trackAsync': `${ours}#{"trackAsync":true}`, 'ours+captureStacks': `${ours}#{"captureStacks":true}` };
  const libs = libArgs.length > 0 ? libArgs : ['bare', ours];
  const runs = new Map(libs.map((l) => [l, []]));
  for (let k = 0; k < 3; k++) {
    for (const l of libs) {
      const [named, opts = ''] = (NAMED[l] ?? l).split('#');
      const otelMetrics = named.endsWith('+otelMetrics');
      const spec = otelMetrics ? named.slice(0, -'+otelMetrics'.length) : named;
      const file = NAMED[spec]?.split('#')[0] ?? spec;
      const lib = file === 'bare' ? 'bare' : path.resolve(file);
      const env = { ...process.env, INPROC_CHILD: lib, INPROC_N: String(N), INPROC_OPTS: opts, INPROC_OTEL_METRICS: otelMetrics ? '1' : '' };
      const out = execFileSync(process.execPath, [self], { env, encoding: 'utf8' });
      runs.get(l).push(Number(out));
    }
  }
  const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
  const base = runs.has('bare') ? med(runs.get('bare')) : undefined;
  for (const [l, a] of runs) {
    const m = med(a);
    const ratio = base === undefined ? '' : `  bare / this ${(base / m).toFixed(3)}  (+${(m - base).toFixed(2)} µs)`;
    console.log(`${l.padEnd(44)} ${m.toFixed(2)} µs per stream  [${a.map((x) => x.toFixed(2)).join(' ')}]${ratio}`);
  }
}
