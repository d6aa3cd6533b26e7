// The scenarios of the core benchmark. Each run starts a fresh server child (one variant) and a
// fresh load child, measures, and ends both. Ratios are taken later, within a round.
import path from 'node:path';
import { Child, root, sleep } from './harness.mjs';
import { EVENT_WIRE_BYTES } from './event.mjs';

import fs from 'node:fs';

/**
 * The built library the servers import. Other work in this checkout may rebuild `dist/` (tsup cleans it
 * first) while the benchmark runs, so the run imports a copy of `dist/esm` taken at its start, kept inside
 * the repository so that `prom-client` and `@opentelemetry/api` resolve from its node_modules as usual.
 */
let DIST = path.join(root, 'dist', 'esm', 'index.js');
export function snapshotDist() {
  const dir = path.join(root, 'bench', 'core', `.dist-${process.pid}`);
  fs.cpSync(path.join(root, 'dist', 'esm'), dir, { recursive: true });
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  DIST = path.join(dir, 'index.js');
  if (!fs.existsSync(DIST)) throw new Error('dist/esm was being rebuilt while it was copied; run again');
  return DIST;
}

function startServer(variant, scenario, { execArgv = [], env = {} } = {}) {
  return new Child('server.mjs', {
    name: `server ${variant} ${scenario}`,
    execArgv,
    env: { BENCH_VARIANT: variant, BENCH_SCENARIO: scenario, BENCH_LIB: DIST, ...env },
    timeoutMs: 240_000,
  });
}

async function stopAll(...children) {
  await Promise.all(children.filter(Boolean).map((c) => c.kill()));
}

function openSockets(port, conns, maxS = 120) {
  return new Child('load-sockets.mjs', {
    name: `sockets x${conns}`,
    env: { BENCH_PORT: String(port), BENCH_CONNS: String(conns), BENCH_MAX_S: String(maxS) },
    timeoutMs: (maxS + 10) * 1000,
  });
}

function rotate(xs, k) {
  const n = k % xs.length;
  return xs.slice(n).concat(xs.slice(0, n));
}

/** Starts one server per variant, all at once (they wait idle while another is measured). */
async function startServers(variants, scenario) {
  const servers = {};
  for (const v of variants) servers[v] = startServer(v, scenario);
  await Promise.all(variants.map(async (v) => (servers[v].port = (await servers[v].wait('ready', 30_000)).port)));
  return servers;
}

/**
 * (a) 200 SSE streams per variant written as fast as backpressure allows; events/s seen by the clients.
 * Every variant has its server and its 200 client sockets up for the whole scenario; one variant
 * at a time is let run (the others' producers wait at a gate), in slices: a cycle gives each variant
 * one slice, in an order that rotates between cycles. A ratio compares slices of the same cycle.
 */
export async function flood(variants, { conns, warmupMs, settleMs, sliceMs, cycles }, log) {
  const servers = await startServers(variants, 'flood');
  const clients = {};
  try {
    for (const v of variants) {
      clients[v] = openSockets(servers[v].port, conns, 600);
      const c = await clients[v].wait('connected', 30_000);
      if (c.open !== conns) throw new Error(`flood ${v}: only ${c.open} of ${conns} streams opened (${JSON.stringify(c.errors)})`);
    }
    for (const v of variants) {
      await servers[v].ask('run');
      await sleep(warmupMs);
      await servers[v].ask('hold');
    }
    const runs = [];
    for (let k = 0; k < cycles; k++) {
      const round = {};
      for (const v of rotate(variants, k)) {
        const srv = servers[v];
        const cli = clients[v];
        try {
          await srv.ask('run');
          await sleep(settleMs);
          const c0 = await srv.ask('cpu');
          await cli.ask('start');
          await sleep(sliceMs);
          const r = await cli.ask('stop');
          const c1 = await srv.ask('cpu');
          await srv.ask('hold');
          const events = r.bytes / EVENT_WIRE_BYTES;
          const cpuUs = c1.cpuUs - c0.cpuUs;
          round[v] = {
            eventsPerS: events / (r.ms / 1000),
            eventsPerCpuS: events / (cpuUs / 1e6),
            serverCpuUsPerEvent: cpuUs / events,
            serverUserUsPerEvent: (c1.userUs - c0.userUs) / events,
            serverCpuShare: cpuUs / ((c1.t - c0.t) * 1000),
          };
        } catch (err) {
          round[v] = { error: String(err.message ?? err).split('\n')[0] };
        }
        log(`(a) flood cycle ${k + 1}/${cycles} ${v}: ${show(round[v])}`);
      }
      runs.push(round);
    }
    for (const v of variants) {
      const check = await servers[v].ask('check');
      if (check.started !== null && check.started !== conns) throw new Error(`flood ${v}: streamscope counted ${check.started} streams, expected ${conns}`);
    }
    return runs;
  } finally {
    await Promise.all(Object.values(clients).map((c) => c.ask('close').catch(() => {})));
    await stopAll(...Object.values(clients), ...Object.values(servers));
  }
}

/**
 * (b) short streams of 10 chunks under autocannon; requests/s. One server per variant, one autocannon
 * child that loads one server at a time, in rotating slices as in (a).
 */
export async function short(variants, { conns, warmupS, sliceS, cycles }, log) {
  const servers = await startServers(variants, 'short');
  const ac = new Child('load-autocannon.mjs', { name: 'autocannon', env: { BENCH_MAX_S: '900' }, timeoutMs: 900_000 });
  try {
    await ac.wait('ready', 20_000);
    for (const v of variants) {
      const w = await ac.ask('run', { port: servers[v].port, durationS: warmupS, connections: conns }, (warmupS + 20) * 1000);
      if (w.errors > 0 || w.non2xx > 0) throw new Error(`short ${v}: warm-up had ${w.errors} errors, ${w.non2xx} non-2xx`);
    }
    const before = {};
    for (const v of variants) before[v] = (await servers[v].ask('check')).started;
    const requests = Object.fromEntries(variants.map((v) => [v, 0]));
    const runs = [];
    for (let k = 0; k < cycles; k++) {
      const round = {};
      for (const v of rotate(variants, k)) {
        const srv = servers[v];
        try {
          const c0 = await srv.ask('cpu');
          const r = await ac.ask('run', { port: srv.port, durationS: sliceS, connections: conns }, (sliceS + 20) * 1000);
          const c1 = await srv.ask('cpu');
          if (r.errors > 0 || r.non2xx > 0) throw new Error(`${r.errors} errors, ${r.non2xx} non-2xx`);
          requests[v] += r.requests;
          const cpuUs = c1.cpuUs - c0.cpuUs;
          round[v] = {
            reqPerS: r.rps,
            reqPerCpuS: r.requests / (cpuUs / 1e6),
            p99ms: r.p99ms,
            serverCpuUsPerReq: cpuUs / r.requests,
            serverUserUsPerReq: (c1.userUs - c0.userUs) / r.requests,
            serverCpuShare: cpuUs / ((c1.t - c0.t) * 1000),
          };
        } catch (err) {
          round[v] = { error: String(err.message ?? err).split('\n')[0] };
        }
        log(`(b) short cycle ${k + 1}/${cycles} ${v}: ${show(round[v])}`);
      }
      runs.push(round);
    }
    // Sanity: streamscope counted every request as a stream (autocannon may cut the last ones short).
    for (const v of variants) {
      const after = (await servers[v].ask('check')).started;
      if (after !== null && after - before[v] < requests[v]) {
        throw new Error(`short ${v}: streamscope counted ${after - before[v]} streams for ${requests[v]} requests`);
      }
    }
    return runs;
  } finally {
    ac.send({ type: 'exit' });
    await stopAll(ac, ...Object.values(servers));
  }
}

function show(x) {
  return Object.entries(x)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? (Number.isInteger(v) ? v : v.toPrecision(4)) : v}`)
    .join(' ');
}

/** (c) heap per idle open stream: heapUsed after GC with N idle SSE streams, minus the warmed-up baseline. */
export async function idle(variant, { conns }) {
  let srv;
  let warm;
  let cli;
  try {
    srv = startServer(variant, 'idle', { execArgv: ['--expose-gc'] });
    const { port } = await srv.wait('ready', 20_000);
    // Warm-up: code, label children, parser free list exist before the baseline.
    warm = openSockets(port, 500, 30);
    await warm.wait('connected', 30_000);
    await warm.ask('close');
    await warm.kill();
    for (let i = 0; i < 50; i++) {
      if ((await srv.ask('check')).open === 0) break;
      await sleep(100);
    }
    const h0 = await srv.ask('heap');
    cli = openSockets(port, conns, 150);
    const c = await cli.wait('connected', 140_000);
    await sleep(500);
    const h1 = await srv.ask('heap');
    if (h1.open !== c.open) throw new Error(`idle: client has ${c.open} open, server ${h1.open}`);
    return {
      requested: conns,
      open: h1.open,
      failed: c.failed,
      errors: c.errors,
      tracked: h1.tracked,
      baselineHeap: h0.heapUsed,
      heapPerStream: (h1.heapUsed - h0.heapUsed) / h1.open,
      rssPerStream: (h1.rss - h0.rss) / h1.open,
    };
  } finally {
    if (cli) await cli.ask('close').catch(() => {});
    await stopAll(warm, cli, srv);
  }
}

/**
 * Issue 3: the detectors' sweep() timed directly. sweep() is not exported from the package, so the
 * server runs the TypeScript sources under tsx (the same code tsup bundles) and calls the real sweep
 * over real tracked streams on real sockets: N idle open streams, then the same N after their clients
 * left while their handlers still hold them (lingering), and the one sweep that raises N findings.
 */
export async function sweepCost({ conns, danglingMs }) {
  let srv;
  let cli;
  try {
    srv = startServer('ours', 'sweep', {
      execArgv: ['--import', 'tsx'],
      env: {
        BENCH_LIB: path.join(root, 'src', 'index.ts'),
        BENCH_DETECTORS: path.join(root, 'src', 'consumers', 'detectors', 'index.ts'),
        BENCH_DANGLING_MS: String(danglingMs),
      },
    });
    const { port } = await srv.wait('ready', 30_000);
    cli = openSockets(port, conns, 150);
    const c = await cli.wait('connected', 140_000);
    await sleep(300);
    const open = await srv.ask('sweep', { n: 100 });
    await cli.ask('close');
    await cli.kill();
    const closedAt = Date.now();
    for (let i = 0; i < 100; i++) {
      if ((await srv.ask('check')).open === 0) break;
      await sleep(20);
    }
    const lingering = await srv.ask('sweep', { n: 50 });
    const beforeThreshold = Date.now() - closedAt < danglingMs;
    await sleep(Math.max(0, closedAt + danglingMs + 2000 - Date.now()));
    const { groups } = await srv.ask('findings');
    const big = groups.filter((x) => x.count > 1);
    const raised = {
      findings: groups.reduce((a, x) => a + x.count, 0),
      sweeps: groups.length,
      largest: groups.reduce((a, x) => (x.count > a.count ? x : a), { count: 0, ms: 0 }),
      // Time from first to last finding of a sweep, over the findings after the first of each sweep.
      usPerFinding: (big.reduce((a, x) => a + x.ms, 0) * 1000) / Math.max(1, big.reduce((a, x) => a + x.count - 1, 0)),
    };
    const after = await srv.ask('sweep', { n: 50 });
    await srv.ask('settle');
    return { requested: conns, opened: c.open, open, lingering, lingeringBeforeThreshold: beforeThreshold, raised, afterFindings: after };
  } finally {
    await stopAll(cli, srv);
  }
}

/**
 * Issue 11: the cost of the progress check behind `stalled_write` (bench/core/progress.mjs, under tsx
 * since sweep() is internal): the sweep with no stream blocked, with streams blocked but not yet
 * sampled, and with streams sampled (one asynchronous read of /proc/self/net/tcp{,6} at a time).
 */
export async function progressCost({ idle, blocked, sweeps }) {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(root, 'bench', 'core', 'progress.mjs'), String(idle), String(blocked), String(sweeps)], {
    cwd: root,
    timeout: 240_000,
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout.trim().split('\n').pop());
}
