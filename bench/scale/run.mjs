#!/usr/bin/env node
// Scale (docs/reliability.md, section "scale"): where one process's ceiling is, with the detectors on.
//
//   npm run bench -- --scale [options]     (builds first; the same as node bench/run.mjs --scale …)
//   node bench/scale/run.mjs [options]     on the current dist/
//     --streams N       open streams (default 100000)
//     --routes N        instrumented routes, the streams spread over them (default 200)
//     --transport T     h1 (one socket per stream), h2 (h2c, 1,000 streams per connection), or auto (default):
//                       h1 when the fd hard limit (`ulimit -Hn`) allows N sockets in one process, else h2
//     --clients N       client processes (default: as many as the fd limit and the ephemeral ports ask)
//     --scrapes N       scrapes, one a second, per phase (default 20); after a heap reading, one more before
//                       them (right after its forced GCs), reported on its own
//     --burst N         streams whose findings are raised in the same sweep (default 10000; 0 skips)
//     --workers N       cluster workers (default 8; 0 skips)
//     --only burst      the burst case alone (no 100k phases, no route scrapes, no cluster): prints its table and
//                       saves the raw result, never writes docs/reliability.md (the section is the full run's)
//     --no-doc          print the table, do not write docs/reliability.md
//     --dist DIR        measure another build (an older commit's dist/, for an A/B)
//     --from FILE       re-render the section from a saved raw result (no measuring)
//   SCALE_APP_FLAGS     (environment) more node/V8 flags for the app (e.g. --no-flush-bytecode, --trace-gc);
//                       SCALE_SCRAPE_DEBUG, SCALE_SCRAPE_PROFILE: see bench/scale/app.mjs
//   SCALE_DEBUG=1       (environment) the raw burst result, printed, also lists the turns over 3 ms, where each
//                       sweep's and each slice's time went, and the GC pauses
//
// Phases, one server process (bench/scale/app.mjs, `node --expose-gc`, the built package), clients in other
// processes: (1) N streams on /plain (no streamscope): heap after GC, then a scrape of /metrics every second
// with the event-loop delay recorded meanwhile (the first, right after the heap reading's forced GCs, reported
// on its own: see scrapes()); (2) one stream per route opened and closed (every route has its
// series), then N on /inst/<k> under instrument(): the same, plus the tracker's sweep timed; (3) the burst: B
// streams on /burst whose clients leave, three writes to each after that in one tick, and the loop watched
// while the next sweep's B zombie_producer findings are raised; (4) a node:cluster primary with
// clusterMetricsHandler() and W workers with the same routes, scraped every second.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { replaceSection } from '../core/doc.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const HERE = join(ROOT, 'bench/scale');
const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0) return argv[i + 1];
  const eq = argv.find((a) => a.startsWith(`--${name}=`));
  return eq ? eq.slice(name.length + 3) : def;
};
// --dist DIR: another build of the package (an A/B against an older commit's dist/)
const DIST = resolve(opt('dist', join(ROOT, 'dist')), 'esm/index.js');
const ONLY = opt('only', undefined);
if (ONLY !== undefined && ONLY !== 'burst') {
  console.error(`bench/scale: --only ${ONLY}: only \`--only burst\` is known`);
  process.exit(2);
}
const onlyBurst = ONLY === 'burst';
const N = onlyBurst ? 0 : Number(opt('streams', 100_000));
const ROUTES = Number(opt('routes', 200));
const SCRAPES = Number(opt('scrapes', 20));
const BURST = Number(opt('burst', 10_000));
const WORKERS = onlyBurst ? 0 : Number(opt('workers', 8));
const writeDoc = !argv.includes('--no-doc') && !onlyBurst;
if (!fs.existsSync(DIST)) {
  console.error('bench/scale: dist/esm/index.js is missing; run `npm run build` first (npm run bench does).');
  process.exit(2);
}

const FROM = opt('from', undefined);
let results;
if (FROM !== undefined) {
  results = JSON.parse(fs.readFileSync(FROM, 'utf8'));
} else {
  results = await measure();
}

async function measure() {
const hardLimit = (() => {
  const v = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  return v === 'unlimited' ? Infinity : Number(v);
})();
const [portLo, portHi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
const ports = portHi - portLo + 1;
const fdFor = (n) => n + 1000; // sockets plus the process's own files and the control connections
let transport = opt('transport', 'auto');
const serverStreams = Math.max(N, BURST);
if (transport === 'auto') transport = fdFor(serverStreams) <= hardLimit ? 'h1' : 'h2';
if (transport === 'h1' && fdFor(serverStreams) > hardLimit) {
  console.error(`bench/scale: ${serverStreams} HTTP/1.1 streams need ~${fdFor(serverStreams)} fds in one process; the hard limit here is ${hardLimit} (ulimit -Hn). Use --transport h2 or fewer --streams.`);
  process.exit(2);
}
const H2 = transport === 'h2';
const PER_SESSION = 1000;
// HTTP/1.1: each client process holds at most (its fd limit - margin) sockets, and each source address has
// `ports` ephemeral ports to one server port; HTTP/2 needs few sockets
const perClient = H2 ? 50_000 : Math.min(hardLimit - 1000, ports - 1000);
const CLIENTS = Number(opt('clients', Math.max(1, Math.ceil(N / perClient))));
const fdLimit = Number.isFinite(hardLimit) ? hardLimit : 1_048_576;
const withFds = (args) => ['-c', `ulimit -n ${fdLimit} && exec "$0" "$@"`, process.execPath, ...args];

const children = new Set();
function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}
function killAll() {
  for (const c of children) {
    try {
      process.kill(-c.pid, 'SIGKILL'); // a detached child's whole group (the cluster's primary and workers)
    } catch {
      c.kill('SIGKILL');
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

function waitFor(child, re) {
  return new Promise((res, rej) => {
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
      const m = re.exec(out);
      if (m) res(m);
    });
    child.on('exit', (c) => rej(new Error(`${child.spawnargs.join(' ')} exited ${c}`)));
  });
}

function get(port, path) {
  const t = performance.now();
  return new Promise((res, rej) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (r) => {
        const chunks = [];
        r.on('data', (c) => chunks.push(c));
        r.on('end', () => res({ body: Buffer.concat(chunks), ms: performance.now() - t, status: r.statusCode }));
      })
      .on('error', rej);
  });
}
const getJson = async (port, path) => JSON.parse((await get(port, path)).body.toString());
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

// ── clients ──
async function startClients(n) {
  const list = [];
  for (let i = 0; i < n; i++) {
    const c = track(spawn('sh', withFds([join(HERE, 'clients.mjs')]), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    await new Promise((r) => c.once('message', r));
    list.push(c);
  }
  return list;
}
const ask = (c, m) =>
  new Promise((res) => {
    c.once('message', res);
    c.send(m);
  });
async function openStreams(clients, port, paths, n) {
  const t = performance.now();
  const share = Math.ceil(n / clients.length);
  const rs = await Promise.all(
    clients.map((c, i) =>
      ask(c, { cmd: 'open', port, paths, n: Math.max(0, Math.min(share, n - i * share)), localAddress: `127.0.0.${2 + i}`, h2: H2, perSession: PER_SESSION }),
    ),
  );
  const opened = rs.reduce((a, r) => a + r.opened, 0);
  const failed = rs.reduce((a, r) => a + r.failed, 0);
  return { opened, failed, openSeconds: (performance.now() - t) / 1000 };
}
const closeStreams = (clients) => Promise.all(clients.map((c) => ask(c, { cmd: 'close' })));

// ── scrapes every second, with the server's event-loop delay recorded meanwhile ──
// After a heap reading (afterGc), the first scrape comes right after the app's forced GCs, while V8's helper
// threads still sweep the heap they freed and with the bytecode of functions not run across them flushed: a
// server scraped every second never sees that. That scrape is timed and reported on its own (with what each of
// the server's threads did meanwhile, where /proc tells); the SCRAPES timed ones follow on the scraper's schedule,
// one a second, from a second after it. The event-loop delay is recorded over all of them.
async function scrapes(ctl, port, afterGc) {
  await getJson(ctl, '/ctl/scrape-cpu');
  await getJson(ctl, '/ctl/scrape-main');
  await getJson(ctl, '/ctl/eld/start');
  const once = async () => {
    await getJson(ctl, '/ctl/scrape-threads/arm');
    const r = await get(port, '/metrics');
    const [cpu] = await getJson(ctl, '/ctl/scrape-cpu');
    await getJson(ctl, '/ctl/scrape-main');
    return { wallMs: r.ms, cpuMs: cpu, ...(await getJson(ctl, '/ctl/scrape-threads')) };
  };
  let postGc;
  if (afterGc) {
    const t = performance.now();
    postGc = await once();
    await sleep(Math.max(0, 1000 - (performance.now() - t)));
  }
  const times = [];
  let bytes = 0;
  let series = 0;
  let firstThreads;
  for (let i = 0; i < SCRAPES; i++) {
    const t = performance.now();
    if (i === 0) await getJson(ctl, '/ctl/scrape-threads/arm');
    const r = await get(port, '/metrics');
    if (i === 0) firstThreads = await getJson(ctl, '/ctl/scrape-threads');
    times.push(r.ms);
    bytes = r.body.length;
    series = r.body
      .toString()
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#')).length;
    await sleep(Math.max(0, 1000 - (performance.now() - t)));
  }
  const eld = await getJson(ctl, '/ctl/eld/stop');
  // the server's CPU per scrape (its handler, request to response handed over), beside the scraper's wall time
  const cpu = await getJson(ctl, '/ctl/scrape-cpu');
  const cpuStats = cpu.length > 0 ? { scrapeCpuMedianMs: pct(cpu, 50), scrapeCpuP99Ms: pct(cpu, 99), scrapeCpuFirstMs: cpu[0] } : {};
  // the main thread's CPU and its wait for a CPU per scrape (Linux), what the machine's load does not change
  const main = await getJson(ctl, '/ctl/scrape-main');
  if (main.length > 0) {
    const run = main.map(([r]) => r);
    const wait = main.map(([, w]) => w);
    Object.assign(cpuStats, { scrapeMainCpuMedianMs: pct(run, 50), scrapeMainCpuP99Ms: pct(run, 99), scrapeMainWaitMedianMs: pct(wait, 50), scrapeMainWaitP99Ms: pct(wait, 99) });
  }
  return { scrapeMedianMs: pct(times, 50), scrapeP99Ms: pct(times, 99), scrapeMaxMs: Math.max(...times), scrapeFirstMs: times[0], scrapeBytes: bytes, series, ...eld, ...cpuStats, postGc, firstThreads };
}

async function settle(ctl) {
  for (let i = 0; i < 200; i++) {
    const h = await getJson(ctl, '/ctl/heap');
    if (h.plainOpen === 0 && h.open === 0) return;
    await sleep(100);
  }
}

// ── the run ──
const machine = {
  node: process.version,
  cpus: os.cpus().length,
  memGiB: Math.round(os.totalmem() / 2 ** 30),
  load: os.loadavg().map((x) => x.toFixed(1)).join(' '),
  fdHardLimit: hardLimit,
  ephemeralPorts: ports,
  transport: H2 ? `HTTP/2 (h2c), ${PER_SESSION} streams per connection` : 'HTTP/1.1, one socket per stream',
  clients: CLIENTS,
  date: new Date().toISOString().slice(0, 10),
};
try {
  machine.commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
} catch {
  /* not a checkout */
}
console.log(`scale: ${N} streams over ${ROUTES} routes, ${machine.transport}, ${CLIENTS} client process(es); fd hard limit ${hardLimit}, ${ports} ephemeral ports; load ${machine.load}`);
const results = { machine, N, ROUTES, SCRAPES };

const app = track(
  spawn('sh', withFds(['--expose-gc', '--max-old-space-size=16384', ...(process.env.SCALE_APP_FLAGS ?? '').split(/\s+/).filter(Boolean), join(HERE, 'app.mjs')]), {
    cwd: ROOT,
    env: { ...process.env, STREAMSCOPE_DIST: DIST, ROUTES: String(ROUTES), TRANSPORT: transport },
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
);
const [, portS, ctlS] = await waitFor(app, /READY (\d+) (\d+)/);
const port = Number(portS);
const ctl = Number(ctlS);
const clients = await startClients(CLIENTS);
const plainPaths = Array.from({ length: ROUTES }, (_, k) => `/plain/${k}`);
const instPaths = Array.from({ length: ROUTES }, (_, k) => `/inst/${k}`);

if (N > 0) {
  const base0 = await getJson(ctl, '/ctl/heap');
  const plain = await openStreams(clients, port, plainPaths, N);
  await sleep(500);
  const heapPlain = await getJson(ctl, '/ctl/heap');
  plain.heapPerStream = (heapPlain.heapUsed - base0.heapUsed) / plain.opened;
  plain.rss = heapPlain.rss;
  Object.assign(plain, await scrapes(ctl, ctl, true));
  results.plain = plain;
  console.log('plain', JSON.stringify(plain));
  await closeStreams(clients);
  await settle(ctl);
}
// every route carries one stream, opened and closed: each has its series
if (!onlyBurst) {
  await openStreams(clients.slice(0, 1), port, instPaths, ROUTES);
  await closeStreams(clients.slice(0, 1));
  await settle(ctl);
  await sleep(500);
}
if (onlyBurst) {
  // the burst case alone
} else if (N > 0) {
  const base1 = await getJson(ctl, '/ctl/heap');
  const inst = await openStreams(clients, port, instPaths, N);
  await sleep(500);
  const heapInst = await getJson(ctl, '/ctl/heap');
  inst.heapPerStream = (heapInst.heapUsed - base1.heapUsed) / inst.opened;
  inst.rss = heapInst.rss;
  Object.assign(inst, await getJson(ctl, '/ctl/sweep'));
  Object.assign(inst, await scrapes(ctl, ctl, true));
  results.inst = inst;
  console.log('inst', JSON.stringify(inst));
  await closeStreams(clients);
  await settle(ctl);
} else {
  results.routesOnly = await scrapes(ctl, ctl, false);
}

if (BURST > 0) {
  const b = await openStreams(clients, port, ['/burst'], BURST);
  await closeStreams(clients);
  for (let i = 0; i < 300; i++) {
    const c = await getJson(ctl, '/ctl/burst/closed');
    if (c.closed >= c.total) break;
    await sleep(100);
  }
  results.burst = { opened: b.opened, ...(await getJson(ctl, '/ctl/burst')) };
  console.log('burst', JSON.stringify(results.burst));
}
for (const c of clients) c.send({ cmd: 'exit' });
app.kill('SIGKILL');

if (WORKERS > 0) {
  const cl = track(
    spawn(process.execPath, [join(HERE, 'cluster.mjs')], {
      cwd: ROOT,
      env: { ...process.env, STREAMSCOPE_DIST: DIST, ROUTES: String(ROUTES), WORKERS: String(WORKERS) },
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    }),
  );
  const [, cport] = await waitFor(cl, /READY (\d+)/);
  const times = [];
  let bytes = 0;
  let series = 0;
  for (let i = 0; i < SCRAPES; i++) {
    const t = performance.now();
    const r = await get(Number(cport), '/metrics');
    times.push(r.ms);
    bytes = r.body.length;
    series = r.body
      .toString()
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#')).length;
    await sleep(Math.max(0, 1000 - (performance.now() - t)));
  }
  // the primary and its workers: one process group
  process.kill(-cl.pid, 'SIGKILL');
  results.cluster = { workers: WORKERS, scrapeMedianMs: pct(times, 50), scrapeP99Ms: pct(times, 99), scrapeMaxMs: Math.max(...times), scrapeBytes: bytes, series };
  console.log('cluster', JSON.stringify(results.cluster));
}

  return results;
}

// ── the table ──
const ms = (x) => (x === undefined ? '–' : `${x < 10 ? x.toFixed(2) : x.toFixed(1)} ms`);
const kib = (x) => `${(x / 1024).toFixed(2)} KiB`;
const int = (x) => Math.round(x).toLocaleString('en-US');
const mark = (v, target) => (v <= target ? `${ms(v)} (target <= ${ms(target)}: met)` : `**${ms(v)}** (target <= ${ms(target)}: missed by ${ms(v - target)})`);
/** A single scrape: wall / CPU, and where /proc told it, the main thread's CPU + wait and the other threads' CPU. */
const firstRow = (x) =>
  `${ms(x.wallMs)} / ${ms(x.cpuMs)}` + (x.mainCpuMs === undefined ? '' : ` (${ms(x.mainCpuMs)} + ${ms(x.mainWaitMs)}; ${ms(x.otherCpuMs)})`);
function render(r) {
  const m = r.machine;
  const out = [];
  out.push(
    `Generated by \`npm run bench -- --scale\` (\`bench/scale/run.mjs\`) on ${m.date}, commit ${m.commit ?? '?'}, Node ${m.node}, ` +
      `${m.cpus} CPUs, ${m.memGiB} GiB, load average at start ${m.load}; ${m.transport}, ${m.clients} client process(es); ` +
      `fd hard limit ${m.fdHardLimit === Infinity ? 'unlimited' : int(m.fdHardLimit)}, ${int(m.ephemeralPorts)} ephemeral ports. ` +
      `${r.SCRAPES} scrapes of \`/metrics\` per phase, one a second, timed by the scraper (another process)` +
      (r.inst?.postGc ? ", from a second after one right after the phase's heap reading (its forced GCs), which is timed on its own." : '.'),
    '',
  );
  if (r.plain && r.inst) {
    const p = r.plain;
    const i = r.inst;
    out.push(
      `| ${int(r.N)} open SSE streams, ${r.ROUTES} routes | \`/plain\` (bare) | \`/inst\` (instrument(), detectors on) |`,
      '| --- | --- | --- |',
      `| streams open (asked ${int(r.N)}) | ${int(p.opened)} | ${int(i.opened)} |`,
      `| heap per open stream (after GC) | ${kib(p.heapPerStream)} | ${kib(i.heapPerStream)}: **${int(i.heapPerStream - p.heapPerStream)} B are streamscope's** |`,
      `| RSS with all open | ${int(p.rss / 2 ** 20)} MiB | ${int(i.rss / 2 ** 20)} MiB |`,
      `| the sweep over all of them (tracker.sweep(), 20 runs): median / p95 / max | – | ${ms(i.sweepMedianMs)} / ${mark(i.sweepP95Ms, 2)} / ${ms(i.sweepMaxMs)} |`,
      `| \`/metrics\`: size, series | ${int(p.scrapeBytes)} B, ${int(p.series)} | ${int(i.scrapeBytes)} B, ${int(i.series)} |`,
      `| \`/metrics\` scrape${i.postGc ? ` (${r.SCRAPES}, one a second, from a second after the one below)` : ''}: median / p99 | ${ms(p.scrapeMedianMs)} / ${ms(p.scrapeP99Ms)} | ${ms(i.scrapeMedianMs)} / ${mark(i.scrapeP99Ms, 10)} |`,
      ...(i.scrapeCpuMedianMs === undefined
        ? []
        : [
            `| the server's CPU per scrape (the handler, request to response handed over): median / p99 | ${ms(p.scrapeCpuMedianMs)} / ${ms(p.scrapeCpuP99Ms)} | ${ms(i.scrapeCpuMedianMs)} / ${ms(i.scrapeCpuP99Ms)} |`,
            ...(i.scrapeMainCpuMedianMs === undefined
              ? []
              : [
                  `| its main thread (/proc): CPU median / p99; waiting for a CPU median / p99 | ${ms(p.scrapeMainCpuMedianMs)} / ${ms(p.scrapeMainCpuP99Ms)}; ${ms(p.scrapeMainWaitMedianMs)} / ${ms(p.scrapeMainWaitP99Ms)} | ${ms(i.scrapeMainCpuMedianMs)} / ${ms(i.scrapeMainCpuP99Ms)}; ${ms(i.scrapeMainWaitMedianMs)} / ${ms(i.scrapeMainWaitP99Ms)} |`,
                ]),
            ...(i.postGc
              ? [
                  `| the first scrape right after the heap reading's forced GCs (not among the ${r.SCRAPES}): wall / the server's CPU${i.postGc.mainCpuMs === undefined ? '' : " (its main thread's CPU + its wait for a CPU; its other threads' CPU)"} | ${firstRow(p.postGc)} | ${firstRow(i.postGc)} |`,
                  `| the first of the ${r.SCRAPES}: wall / the server's CPU${i.firstThreads?.mainCpuMs === undefined ? '' : ' (the same)'} | ${firstRow({ ...p.firstThreads, wallMs: p.scrapeFirstMs, cpuMs: p.scrapeCpuFirstMs })} | ${firstRow({ ...i.firstThreads, wallMs: i.scrapeFirstMs, cpuMs: i.scrapeCpuFirstMs })} |`,
                ]
              : [`| the phase's first scrape: wall / the server's CPU | ${ms(p.scrapeFirstMs)} / ${ms(p.scrapeCpuFirstMs)} | ${ms(i.scrapeFirstMs)} / ${ms(i.scrapeCpuFirstMs)} |`]),
          ]),
      `| event-loop delay p99 (max) while scraped every second | ${ms(p.loopDelayP99Ms)} (${ms(p.loopDelayMaxMs)}) | ${ms(i.loopDelayP99Ms)} (${ms(i.loopDelayMaxMs)}): ${mark(i.loopDelayP99Ms - p.loopDelayP99Ms, 20).replace(/^/, 'above bare ')} |`,
      `| time to open them all | ${p.openSeconds.toFixed(1)} s | ${i.openSeconds.toFixed(1)} s |`,
      '',
    );
  } else if (r.routesOnly) {
    const s = r.routesOnly;
    out.push(`| ${r.ROUTES} routes, no stream open | |`, '| --- | --- |', `| \`/metrics\`: size, series | ${int(s.scrapeBytes)} B, ${int(s.series)} |`, `| scrape median / p99 | ${ms(s.scrapeMedianMs)} / ${ms(s.scrapeP99Ms)} |`, '');
  }
  if (r.burst) {
    const b = r.burst;
    out.push(
      `| burst: ${int(b.streams)} streams crossing a threshold in the same tick | |`,
      '| --- | --- |',
      `| findings raised (zombie_producer, one per stream) | ${int(b.raised)} of ${int(b.streams)} (${int(b.raisedBefore)} before the deciding sweep) |`,
      `| over | ${int(b.turns)} turn(s) of the event loop, at most ${int(b.maxPerTurn)} in one, ${ms(b.raisingMs)} from first to last |`,
      `| longest single hold of the loop while they were raised: wall time between two turns / CPU ${b.cpuClock === 'main thread' ? 'the main thread' : 'this process'} used in it | ${ms(b.longestTurnMs)} / ${mark(b.longestTurnCpuMs, 10)} |`,
      ...(b.gcPauses === undefined
        ? []
        : [
            `| the same, turns no GC pause fell in (the detectors' own work) / V8 GC pauses meanwhile | ${ms(b.longestTurnNoGcMs)} / ${mark(b.longestTurnNoGcCpuMs, 10)}; ${int(b.gcPauses)} GC pause(s), longest ${ms(b.gcLongestMs)} |`,
          ]),
      `| the sweeps that decided them (every 250 ms, their checks over every stream and the findings raised within their budget): longest | ${ms(b.decidingSweepMs)} (CPU ${ms(b.decidingSweepCpuMs)}); ${int(b.sweeps)} sweep(s), ${int(b.raisedInSweep)} raised in the first |`,
      `| event-loop delay max meanwhile (1 ms timer) | ${ms(b.loopDelayMaxMs)} |`,
      '',
    );
  }
  if (r.cluster) {
    const c = r.cluster;
    out.push(
      `| cluster: clusterMetricsHandler(), ${c.workers} workers × ${r.ROUTES} routes | |`,
      '| --- | --- |',
      `| \`/metrics\`: size, series | ${int(c.scrapeBytes)} B, ${int(c.series)} |`,
      `| scrape (primary asks every worker, merges): median / p99 / max | ${ms(c.scrapeMedianMs)} / ${ms(c.scrapeP99Ms)} / ${ms(c.scrapeMaxMs)} |`,
      '',
    );
  }
  return out.join('\n');
}
const section = render(results);
if (FROM === undefined) fs.writeFileSync(join(os.tmpdir(), onlyBurst ? 'streamscope-bench-scale-burst.json' : 'streamscope-bench-scale.json'), JSON.stringify(results, null, 2));
console.log('\n' + section);
if (writeDoc) {
  const doc = join(ROOT, 'docs/reliability.md');
  fs.writeFileSync(doc, replaceSection(fs.readFileSync(doc, 'utf8'), 'scale', section));
  console.log('wrote docs/reliability.md (scale section)');
}
// (measuring: the clients, the app and the cluster are killed on exit)
process.exit(0);
