#!/usr/bin/env node
// How long does `diag capture --heap` pause the target's event loop, via the agent and via the inspector?
//
//   npm run build && node bench/capture-pause.mjs [--ballast-mb 160] [--runs 2]
//   node bench/capture-pause.mjs --kinds heap-profile,cpu,trace [--vias agent,inspector] [--target-env K=V,...] [--settle-ms 2000]
//
// --kinds: heap (the snapshot; default), heap-profile (2 s sampled heap profile), cpu (2 s), trace (2 s).
// --target-env: extra environment for the target, e.g. STREAMSCOPE_PPROF=off (the agent's inspector fallback),
// STREAMSCOPE_CPU_PROFILER=on (continuous CPU profiler, started with the target), STREAMSCOPE_HEAP_SAMPLING=524288,
// STREAMSCOPE_CPU_EAGER=off (no eager-logging CPU profiler: `--cpu` through the agent's inspector session).
//
// For each transport and run: a fresh target (test/fixtures/servers/stream-server.mjs with BALLAST_MB of
// retained small objects, ~200 MB used heap at 160) loaded with bench/pause-probe.mjs, one SSE client
// receiving an event every 10 ms, then `diag capture <pid> --heap --via <transport>`. Reported: the
// target's longest event-loop stall (probe inside the target), the longest gap the SSE client saw, the
// capture's wall time, the snapshot size and the target's peak RSS growth (VmHWM) during the capture.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

const root = path.resolve(new URL('..', import.meta.url).pathname);
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const ballast = arg('--ballast-mb', 160);
const runs = arg('--runs', 2);
const settleMs = arg('--settle-ms', 2000);
const sarg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const kinds = sarg('--kinds', 'heap').split(',');
const vias = sarg('--vias', 'agent,inspector').split(',');
const targetEnv = Object.fromEntries(
  sarg('--target-env', '')
    .split(',')
    .filter(Boolean)
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
const KIND_ARGS = { heap: ['--heap', '--force'], 'heap-profile': ['--heap-profile', '2'], cpu: ['--cpu', '2'], trace: ['--trace', '2'] };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-pause-'));
const agentDir = path.join(tmp, 'agents');

function kb(pid, field) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) : NaN;
}

function startTarget() {
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      ['--inspect-port=0', '--import', path.join(root, 'bench/pause-probe.mjs'), '--import', path.join(root, 'dist/esm/register.js'), path.join(root, 'test/fixtures/servers/stream-server.mjs')],
      { env: { ...process.env, BALLAST_MB: String(ballast), STREAMSCOPE_AGENT_DIR: agentDir, ...targetEnv }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const pauses = [];
    createInterface({ input: p.stderr }).on('line', (l) => {
      if (l.startsWith('PAUSE ')) pauses.push(JSON.parse(l.slice(6)));
    });
    p.once('exit', (c) => reject(new Error(`target exited ${c}`)));
    createInterface({ input: p.stdout }).once('line', (l) => resolve({ proc: p, ...JSON.parse(l), pauses }));
  });
}

function sse(port) {
  let last = 0;
  let maxGap = 0;
  let n = 0;
  const req = http.get({ host: '127.0.0.1', port, path: '/events?every=10', agent: false }, (res) => {
    res.on('data', () => {
      const now = performance.now();
      if (last > 0) maxGap = Math.max(maxGap, now - last);
      last = now;
      n++;
    });
  });
  req.on('error', () => undefined);
  return { reset: () => (maxGap = 0), get maxGap() { return maxGap; }, get n() { return n; }, close: () => req.destroy() };
}

async function probe(t) {
  const before = t.pauses.length;
  t.proc.kill('SIGUSR2');
  while (t.pauses.length === before) await new Promise((r) => setTimeout(r, 20));
  return t.pauses.at(-1);
}

function capture(pid, via, out, kind) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, [path.join(root, 'dist/diagnostics/cli.js'), 'capture', String(pid), ...KIND_ARGS[kind], '--via', via, '--out', out], {
      env: { ...process.env, STREAMSCOPE_AGENT_DIR: agentDir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (c) => (err += c));
    p.on('exit', (code) => resolve({ code, ms: performance.now() - t0, err }));
  });
}

const rows = [];
const load0 = os.loadavg()[0].toFixed(1);
for (const kind of kinds) for (const via of vias) {
  for (let i = 0; i < runs; i++) {
    const t = await startTarget();
    const client = sse(t.port);
    // --settle-ms: the target builds its ballast first, so a profiler the agent starts at start-up (after loading
    // @datadog/pprof, which a loaded machine can take seconds over) walks the ballast then: wait it out
    await new Promise((r) => setTimeout(r, settleMs));
    await probe(t); // reset
    const heapUsedMb = (await probe(t)).heapUsedMb;
    client.reset();
    try {
      fs.writeFileSync(`/proc/${t.pid}/clear_refs`, '5'); // reset VmHWM (needs the same user)
    } catch {}
    const rssBefore = kb(t.pid, 'VmRSS');
    const out = path.join(tmp, `${via}-${i}`);
    const r = await capture(t.pid, via, out, kind);
    await new Promise((r2) => setTimeout(r2, 300));
    const stall = (await probe(t)).maxStallMs;
    const hwm = kb(t.pid, 'VmHWM');
    if (r.code !== 0) throw new Error(`capture failed: ${r.err}`);
    const snap = path.join(out, 'heap.heapsnapshot');
    // which profiler answered (the agent says so after the capture), and how long its own calls took
    const engine = /(?:heap|cpu) profile: (pprof|eager|inspector)\b/.exec(r.err)?.[1] ?? '';
    const calls = /([\d.]+) ms in the target's calls/.exec(r.err)?.[1];
    rows.push({
      kind: kind + (engine ? ` (${engine})` : '') + (calls ? `, ${kind === 'cpu' ? 'start + stop' : 'window end'} ${calls} ms` : ''),
      via,
      heapUsedMb,
      maxStallMs: stall,
      sseMaxGapMs: Math.round(client.maxGap),
      captureMs: Math.round(r.ms),
      snapshotMb: fs.existsSync(snap) ? Math.round(fs.statSync(snap).size / 2 ** 20) : 0,
      rssBeforeMb: Math.round(rssBefore / 1024),
      peakRssGrowthMb: Math.round((hwm - rssBefore) / 1024),
    });
    console.error(JSON.stringify(rows.at(-1)));
    client.close();
    t.proc.kill('SIGKILL');
    fs.rmSync(out, { recursive: true, force: true });
  }
}
fs.rmSync(tmp, { recursive: true, force: true });

let cpu = '';
try {
  cpu = execFileSync('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], { encoding: 'utf8' }).trim();
} catch {}
console.log(`Node ${process.version}, ${os.cpus().length} CPUs (${cpu}), ballast ${ballast} MB, load average ${load0} before, ${os.loadavg()[0].toFixed(1)} after${Object.keys(targetEnv).length ? `, target env ${JSON.stringify(targetEnv)}` : ''}\n`);
if (kinds.length === 1 && kinds[0] === 'heap') {
  console.log('| transport | used heap | target stall (max) | SSE client max gap | capture wall time | snapshot | target peak RSS growth |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(`| ${r.via} | ${r.heapUsedMb} MB | ${(r.maxStallMs / 1000).toFixed(1)} s | ${(r.sseMaxGapMs / 1000).toFixed(1)} s | ${(r.captureMs / 1000).toFixed(1)} s | ${r.snapshotMb} MB | +${r.peakRssGrowthMb} MB (from ${r.rssBeforeMb} MB) |`);
  }
} else {
  console.log('| capture | transport | used heap | target stall (max) | SSE client max gap | capture wall time | target peak RSS growth |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(`| ${r.kind} | ${r.via} | ${r.heapUsedMb} MB | ${r.maxStallMs} ms | ${r.sseMaxGapMs} ms | ${(r.captureMs / 1000).toFixed(1)} s | +${r.peakRssGrowthMb} MB (from ${r.rssBeforeMb} MB) |`);
  }
}
