#!/usr/bin/env node
// Profiles one server variant under the load of one scenario (the inspector's sampling profiler, after
// warm-up) and prints where the server's CPU goes: self time by package and the top functions. For finding a cost, not a benchmark.
//
//   node bench/core/profile.mjs short ours [seconds] [node flags...]   (scenarios: flood, short; any variant)
//   e.g. --single-threaded-gc puts all GC work on the main thread, where the profile sees it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Child, root, sleep } from './harness.mjs';

const [scenario = 'short', variant = 'ours', secondsArg = '8', ...nodeArgs] = process.argv.slice(2);
const seconds = Number(secondsArg);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'streamscope-prof-'));

const file = path.join(dir, `${scenario}-${variant}.cpuprofile`);
const srv = new Child('server.mjs', {
  name: `server ${variant}`,
  execArgv: nodeArgs,
  env: { BENCH_VARIANT: variant, BENCH_SCENARIO: scenario, BENCH_LIB: path.join(root, 'dist', 'esm', 'index.js') },
  timeoutMs: (seconds + 60) * 1000,
});
let load;
try {
  const { port } = await srv.wait('ready', 30_000);
  if (scenario === 'flood') {
    load = new Child('load-sockets.mjs', { env: { BENCH_PORT: String(port), BENCH_CONNS: '200', BENCH_MAX_S: String(seconds + 30) } });
    await load.wait('connected', 30_000);
    await srv.ask('run');
    await sleep(1500);
    await srv.ask('prof-start');
    await sleep(seconds * 1000);
    await srv.ask('prof-stop', { file });
    await load.ask('close');
  } else {
    load = new Child('load-autocannon.mjs', { env: { BENCH_MAX_S: String(seconds + 30) } });
    await load.wait('ready', 20_000);
    await load.ask('run', { port, durationS: 1, connections: 50 }, 30_000);
    await srv.ask('prof-start');
    const r = await load.ask('run', { port, durationS: seconds, connections: 50 }, (seconds + 20) * 1000);
    await srv.ask('prof-stop', { file });
    console.log(`${r.requests} requests, ${Math.round(r.rps)} req/s`);
  }
} finally {
  await load?.kill();
  await srv.kill();
}

const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
const dt = new Map();
for (let i = 0; i < prof.samples.length; i++) dt.set(prof.samples[i], (dt.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i] ?? 0));
const byFn = new Map();
const byPkg = new Map();
let total = 0;
for (const n of prof.nodes) {
  const us = dt.get(n.id) ?? 0;
  if (us === 0) continue;
  total += us;
  const cf = n.callFrame;
  const url = cf.url || '';
  const pkg = url.includes('/dist/esm/')
    ? 'streamscope (dist)'
    : url.includes('node_modules/')
      ? url.replace(/^.*node_modules\/((@[^/]+\/)?[^/]+).*$/, '$1')
      : url.startsWith('node:')
        ? 'node:' + url.slice(5).split('/')[0]
        : url.includes('/bench/')
          ? 'bench server'
          : cf.functionName.startsWith('(') ? cf.functionName : 'native/other';
  byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + us);
  const key = `${cf.functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|dist|bench)\//, '$1/')}:${cf.lineNumber + 1}`;
  byFn.set(key, (byFn.get(key) ?? 0) + us);
}
// Inclusive time of streamscope's functions and of the prom-client / OpenTelemetry calls they make.
const parent = new Map();
for (const n of prof.nodes) for (const ch of n.children ?? []) parent.set(ch, n.id);
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const incl = new Map();
for (let i = 0; i < prof.samples.length; i++) {
  const us = prof.timeDeltas[i] ?? 0;
  const seen = new Set();
  for (let id = prof.samples[i]; id !== undefined; id = parent.get(id)) {
    const cf = byId.get(id).callFrame;
    if (!cf.url.includes('/dist/esm/') && !cf.url.includes('prom-client') && !cf.url.includes('@opentelemetry')) continue;
    const key = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${cf.lineNumber + 1}`;
    if (seen.has(key)) continue;
    seen.add(key);
    incl.set(key, (incl.get(key) ?? 0) + us);
  }
}
const pct = (us) => ((100 * us) / total).toFixed(1).padStart(5) + ' %';
console.log(`\nprofile: ${file} (${(total / 1e6).toFixed(2)} s sampled)\n\nself time by package:`);
for (const [k, v] of [...byPkg].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${pct(v)}  ${k}`);
console.log('\ntop functions by self time:');
for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`  ${pct(v)}  ${k}`);
console.log('\ninclusive time of streamscope, prom-client and OpenTelemetry functions:');
for (const [k, v] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`  ${pct(v)}  ${k}`);

// Samples attributed to instrumentation: from the leaf up, skipping Node's generic helpers (events,
// util, validators, natives like performance.now), the first frame that is either instrumentation
// (streamscope, prom-client, OpenTelemetry) or the host's work (node:http, streams, net, the bench
// server) decides. Work done by Node on the instrumentation's behalf (adding a listener) counts as
// the instrumentation's; the original write()/end() it forwards to counts as the host's.
const OURS = (u) => u.includes('/dist/esm/') || u.includes('prom-client') || u.includes('@opentelemetry') || u.includes('require-in-the-middle') || u.includes('import-in-the-middle');
const HOST = (u) => /^node:(_http_|net|internal\/stream|internal\/streams|internal\/timers|timers|internal\/process\/task_queues)/.test(u) || u.includes('/bench/');
let attributed = 0;
const attrBy = new Map();
for (let i = 0; i < prof.samples.length; i++) {
  const us = prof.timeDeltas[i] ?? 0;
  for (let id = prof.samples[i]; id !== undefined; id = parent.get(id)) {
    const cf = byId.get(id).callFrame;
    if (OURS(cf.url)) {
      attributed += us;
      const key = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${cf.lineNumber + 1}`;
      attrBy.set(key, (attrBy.get(key) ?? 0) + us);
      break;
    }
    if (HOST(cf.url)) break;
  }
}
const busy = total - (byPkg.get('(idle)') ?? 0);
console.log(`\ninstrumentation's own work: ${((100 * attributed) / busy).toFixed(1)} % of the server's busy samples; nearest instrumentation frame:`);
for (const [k, v] of [...attrBy].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${((100 * v) / busy).toFixed(1).padStart(5)} %  ${k}`);
