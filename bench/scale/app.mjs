// The scale bench's server (bench/scale/run.mjs starts it with `node --expose-gc`, on the built package, dist/):
// one process that holds open SSE streams for clients in other processes, over HTTP/1.1 (one socket each) or
// HTTP/2 (h2c, many streams per connection), and answers the runner's control requests:
//   /plain/<k>       a stream held open, no streamscope (bare)
//   /inst/<k>        the same under instrument({ route: '/inst/<k>' }), k < ROUTES: one instrument() per route
//   /burst           instrument({ route: '/burst' }): held open; /ctl/burst writes 3 times to every one of them
//                    after their clients left, in one tick, so the next sweep finds as many zombie_producer
//                    findings at once
//   /metrics         metricsHandler() (the global prom-client register)
//   /ctl/scrape-cpu  the CPU time of each /metrics handler since the last ask (ms, the process's: see cpuUsage)
//   /ctl/scrape-main the main thread's CPU and its time waiting for a CPU in each /metrics handler since the last
//                    ask (ms, Linux: /proc schedstat; none elsewhere), the load-independent part of a scrape's time
//   /ctl/scrape-threads/arm, /ctl/scrape-threads   the next /metrics handler measured per thread (Linux,
//                    /proc/self/task): the main thread's CPU and its time waiting for a CPU, and the other threads'
//                    CPU (V8's helper threads: GC, compiler; libuv's pool), which process.cpuUsage() counts together
//                    (read around the handler: the main thread's figure includes the reading, a few tenths of a ms)
//   /ctl/heap        heap used after GC
//   /ctl/sweep       the tracker's sweep (detectors, then releases) timed directly, 20 runs
//   /ctl/eld/start, /ctl/eld/stop   event-loop delay (monitorEventLoopDelay, 1 ms resolution) over a window
//   /ctl/burst       see above; answers when every finding is raised, with the longest loop hold meanwhile
//                    (SCALE_PROFILE=FILE in the environment: a CPU profile of it written there)
// SCALE_SCRAPE_DEBUG=1 (environment): each /metrics handler's CPU and wall time split at res.end() (the rendering
//   before it, the hand-over in it), each thread's CPU (/proc), the V8 GC pauses that fell in it, and for the
//   first after a heap reading what each thread did since; printed to stderr at each /ctl/scrape-cpu. With a
//   debugging build (a copy of dist/ inside the checkout, given with --dist, whose chunk that defines them ends
//   with `globalThis.__streamscopeStats = { prerenderStats, expositionStats };`) also the pieces each scrape
//   rendered itself and the prerender's refresh passes since the scrape before.
// SCALE_SCRAPE_PROFILE=FILE (environment): a CPU profile of the /inst phase's first scrape (the profiler starts
//   at the /ctl/scrape-cpu that opens the phase's scrapes, after /ctl/sweep, and stops when that scrape is
//   served). Starting the profiler changes what that scrape meets (on 2026-12-08 the profiled one used 8 ms of
//   the process's CPU where unprofiled ones used 15-20 ms: V8's sweeping after the heap reading was further on):
//   read it for where the main thread's time goes, not for the total.
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const DIST = process.env.STREAMSCOPE_DIST;
const ROUTES = Number(process.env.ROUTES ?? 200);
const H2 = process.env.TRANSPORT === 'h2';
const { instrument, metricsHandler, onFinding } = await import(pathToFileURL(DIST).href);
const tracker = globalThis[Symbol.for('streamscope.tracker')];

let plainOpen = 0;
function hold(res) {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  res.write(': open\n\n');
}
const insts = [];
for (let k = 0; k < ROUTES; k++) {
  insts.push(instrument((_req, res) => hold(res), { route: `/inst/${k}`, stallAfterMs: 60_000, danglingAfterMs: 60_000 }));
}
const burstOpen = new Set();
let burstClosed = 0;
const burst = instrument(
  (_req, res) => {
    hold(res);
    burstOpen.add(res);
    res.on('close', () => burstClosed++);
  },
  { route: '/burst', stallAfterMs: 60_000, danglingAfterMs: 60_000 },
);
const metrics = metricsHandler();
/** The CPU each scrape's handler took (/ctl/scrape-cpu answers them and starts a new list). */
const scrapeCpu = [];
/** The main thread's [CPU, wait for a CPU] in each scrape's handler, ms (/ctl/scrape-main answers them). */
const scrapeMain = [];
const MAIN_STAT = `/proc/self/task/${process.pid}/schedstat`;
/** The main thread's CPU time and time runnable but waiting for a CPU so far (ns), or null (not Linux). */
function mainTimes() {
  try {
    return fs.readFileSync(MAIN_STAT, 'utf8').split(' ').map(Number);
  } catch {
    return null;
  }
}
/** /ctl/scrape-threads/arm: the next scrape is measured per thread; its figures, once served. */
let threadsArmed = false;
let threadsResult = null;
/** SCALE_SCRAPE_DEBUG: per scrape, where its time went; GC pauses and refresh passes seen meanwhile. */
const scrapeDebug = process.env.SCALE_SCRAPE_DEBUG ? { scrapes: [], gcs: [], refreshes: [] } : null;
const ssStats = () => globalThis.__streamscopeStats;
if (scrapeDebug !== null) {
  new PerformanceObserver((l) => l.getEntries().forEach((e) => scrapeDebug.gcs.push([e.startTime, e.duration, e.detail?.kind ?? e.kind]))).observe({ entryTypes: ['gc'] });
  // the refresh passes' start times (its counter polled: a debugging build's)
  let seen = -1;
  setInterval(() => {
    const st = ssStats()?.prerenderStats;
    if (st === undefined || st.refreshes === seen) return;
    seen = st.refreshes;
    scrapeDebug.refreshes.push([performance.now(), st.refreshes, st.children, st.families]);
  }, 10).unref();
}
/** SCALE_SCRAPE_PROFILE: 'armed' after /ctl/sweep, a Session once started, 'done' after the first scrape. */
let scrapeProfile = null;
/** SCALE_SCRAPE_DEBUG: when the last heap reading's GCs ended, and each thread's CPU then. */
let afterHeap = null;

function heapAfterGc() {
  for (let i = 0; i < 4; i++) globalThis.gc?.();
  return process.memoryUsage().heapUsed;
}

/**
 * The CPU the main thread used (Node >= 23.9: `process.threadCpuUsage`), else the process's (V8's GC helper threads and
 * libuv's pool included: more than what held the loop).
 */
const cpuUsage = process.threadCpuUsage ? (prev) => process.threadCpuUsage(prev) : (prev) => process.cpuUsage(prev);

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

async function timeSweeps() {
  const t = [];
  for (let i = 0; i < 20; i++) {
    const a = performance.now();
    tracker.sweep();
    t.push(performance.now() - a);
    await new Promise((r) => setImmediate(r));
  }
  t.sort((a, b) => a - b);
  return { sweepMedianMs: pct(t, 50), sweepP95Ms: pct(t, 95), sweepMaxMs: t[t.length - 1], open: tracker.open.size };
}

let eld = null;
function eldStart() {
  eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  return {};
}
function eldStop() {
  eld.disable();
  const r = { loopDelayP99Ms: eld.percentile(99) / 1e6, loopDelayMaxMs: eld.max / 1e6, loopDelayMeanMs: eld.mean / 1e6 };
  eld = null;
  return r;
}

/**
 * Every /burst stream's client has gone (the runner closed them and waits for `closed`); three writes to each in
 * one tick (the app's own hold, not measured), then the loop is watched until every zombie_producer finding is
 * raised: the longest hold of the loop meanwhile (1 ms timer), and how many turns of the loop the raising took.
 */
async function runBurst() {
  // SCALE_PROFILE=FILE (environment): a CPU profile of the burst (from the late writes to the last finding)
  let profiler = null;
  if (process.env.SCALE_PROFILE) {
    const { Session } = await import('node:inspector/promises');
    profiler = new Session();
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
    await profiler.post('Profiler.start');
  }
  const list = [...burstOpen];
  const want = list.length;
  let raised = 0;
  let turn = 0;
  const perTurn = new Map();
  let firstAt = -1;
  let lastAt = -1;
  const off = onFinding((f) => {
    if (f.route !== '/burst' || f.kind !== 'zombie_producer') return;
    raised++;
    perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1);
    if (firstAt < 0) firstAt = performance.now();
    lastAt = performance.now();
  });
  // the app's writes (its own work, however long they hold the loop: not measured), then the tracker's timer is
  // stopped and, once the loop is quiet, its sweep is run from a timer as the tracker's own would: that sweep
  // decides every finding at once
  for (const res of list) for (let i = 0; i < 3; i++) res.write('data: late\n\n', () => {});
  tracker.stopSweep();
  await new Promise((r) => setTimeout(r, 100));
  const raisedBefore = raised;
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // the longest gap between two turns of the loop, measured by an immediate that re-arms itself
  let last = performance.now();
  const from = last;
  let longest = 0;
  // and the CPU this process used between two turns (what it held the loop for, whatever the machine's load)
  let lastCpu = cpuUsage();
  let longestCpu = 0;
  let spinning = true;
  const turnsLog = [];
  // the turns that held the loop for more than 1 ms (wall or CPU), and V8's GC pauses meanwhile: a turn a GC pause
  // fell in is told apart from one that held the loop with the detectors' own work
  const heavy = [];
  const gcs = [];
  const gcObs = new PerformanceObserver((l) => l.getEntries().forEach((e) => gcs.push([e.startTime, e.startTime + e.duration])));
  gcObs.observe({ entryTypes: ['gc'] });
  const spin = () => {
    const now = performance.now();
    if (now - last > longest) longest = now - last;
    const cu = cpuUsage(lastCpu);
    const cpu = (cu.user + cu.system) / 1000;
    if (process.env.SCALE_DEBUG && (now - last > 3 || cpu > 3)) turnsLog.push([turn, +(now - last).toFixed(1), +cpu.toFixed(1), perTurn.get(turn) ?? 0]);
    if (now - last > 1 || cpu > 1) heavy.push([last, now, cpu]);
    last = now;
    if (cpu > longestCpu) longestCpu = cpu;
    lastCpu = cpuUsage();
    turn++;
    if (spinning) setImmediate(spin);
  };
  setImmediate(spin);
  // the sweeps, from a timer every 250 ms as the tracker's own: the first decides what it can, the next the rest
  const deciding = { ms: 0, cpuMs: 0, raised: 0, sweeps: 0 };
  const sweepNow = () => {
    const t = performance.now();
    const c = cpuUsage();
    const before = raised;
    tracker.sweep();
    const ms = performance.now() - t;
    const cu = cpuUsage(c);
    deciding.sweeps++;
    if (ms > deciding.ms) deciding.ms = ms;
    if ((cu.user + cu.system) / 1000 > deciding.cpuMs) deciding.cpuMs = (cu.user + cu.system) / 1000;
    if (deciding.sweeps === 1) deciding.raised = raised - before;
  };
  // SCALE_DEBUG: where each sweep's time goes (each listener's sweep, the tracker's releases), and GC pauses
  const parts = [];
  const undo = [];
  if (process.env.SCALE_DEBUG) {
    const timed = (obj, key, name) => {
      const fn = obj[key];
      if (typeof fn !== 'function') return; // not in this build
      obj[key] = function (...a) {
        const t = performance.now();
        const r0 = raised;
        try {
          return fn.apply(this, a);
        } finally {
          const p = [deciding.sweeps, name, +(performance.now() - t).toFixed(2)];
          if (name === 'slice') p.push(tracker.lingerStats.lastSlice, raised - r0);
          parts.push(p);
        }
      };
      undo.push(() => (obj[key] = fn));
    };
    for (const l of tracker.listeners) if (typeof l.sweep === 'function') timed(l, 'sweep', l.component);
    timed(tracker, 'releaseLetGo', 'releaseLetGo');
    // the walk over the lingering streams in slices (a turn each), where the build has it
    timed(tracker, 'nextLingerSlice', 'slice');
    timed(tracker, 'clearWritten', 'clearWritten');
    // every callback of the loop (immediates, timers, I/O), timed: the longest ones, and what each was
    const { createHook } = await import('node:async_hooks');
    const types = new Map();
    const started = new Map();
    const longCallbacks = [];
    const hook = createHook({
      init(id, type) {
        types.set(id, type);
      },
      before(id) {
        started.set(id, performance.now());
      },
      after(id) {
        const t = started.get(id);
        if (t === undefined) return;
        started.delete(id);
        const d = performance.now() - t;
        if (d > 2) longCallbacks.push([types.get(id) ?? '?', +d.toFixed(2)]);
      },
      destroy(id) {
        types.delete(id);
      },
    }).enable();
    undo.push(() => {
      hook.disable();
      parts.push(['callbacks over 2 ms', longCallbacks]);
    });
    const obs = new PerformanceObserver((l) => l.getEntries().forEach((e) => parts.push([deciding.sweeps, 'gc', +e.duration.toFixed(2)])));
    obs.observe({ entryTypes: ['gc'] });
    undo.push(() => obs.disconnect());
  }
  setTimeout(sweepNow, 20);
  const sweeping = setInterval(sweepNow, 250);
  const t0 = performance.now();
  while (raised < want && performance.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 20));
  spinning = false;
  clearInterval(sweeping);
  h.disable();
  off();
  for (const u of undo) u();
  // the GC entries come asynchronously
  await new Promise((r) => setTimeout(r, 50));
  gcObs.disconnect();
  let noGcMs = 0;
  let noGcCpuMs = 0;
  for (const [a, b, cpu] of heavy) {
    if (gcs.some(([g0, g1]) => g0 < b && g1 > a)) continue;
    if (b - a > noGcMs) noGcMs = b - a;
    if (cpu > noGcCpuMs) noGcCpuMs = cpu;
  }
  const inWindow = gcs.filter(([g0]) => g0 >= from);

  if (profiler !== null) {
    const { profile } = await profiler.post('Profiler.stop');
    (await import('node:fs')).writeFileSync(process.env.SCALE_PROFILE, JSON.stringify(profile));
    profiler.disconnect();
  }
  for (const res of list) res.destroy?.();
  burstOpen.clear();
  burstClosed = 0;
  return {
    streams: want,
    raised,
    turns: perTurn.size,
    maxPerTurn: Math.max(0, ...perTurn.values()),
    longestTurnMs: longest,
    longestTurnCpuMs: longestCpu,
    loopDelayMaxMs: h.max / 1e6,
    raisingMs: lastAt - firstAt,
    decidingSweepMs: deciding.ms,
    raisedBefore,
    turnsLog: process.env.SCALE_DEBUG ? turnsLog : undefined,
    sweepParts: process.env.SCALE_DEBUG ? parts : undefined,
    raisedInSweep: deciding.raised,
    decidingSweepCpuMs: deciding.cpuMs,
    sweeps: deciding.sweeps,
    cpuClock: process.threadCpuUsage ? 'main thread' : 'process',
    longestTurnNoGcMs: noGcMs,
    longestTurnNoGcCpuMs: noGcCpuMs,
    gcPauses: inWindow.length,
    gcLongestMs: Math.max(0, ...inWindow.map(([g0, g1]) => g1 - g0)),
  };
}

/**
 * Each thread of this process (Linux: /proc/self/task): its name and, from schedstat, its CPU time so far and its
 * time runnable but waiting for a CPU (ns).
 */
function threadTimes() {
  const m = new Map();
  let tasks;
  try {
    tasks = fs.readdirSync('/proc/self/task');
  } catch {
    return null; // not Linux
  }
  for (const t of tasks) {
    try {
      const [run, wait] = fs.readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ').map(Number);
      m.set(t, [Number(t) === process.pid ? 'main' : `${fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim()}:${t}`, run, wait]);
    } catch {
      // a thread gone meanwhile
    }
  }
  return m;
}
/** The CPU each thread used since `before` (threadTimes()), ms, and the main thread's wait for a CPU. */
function threadsSince(before) {
  const out = {};
  for (const [t, [name, run, wait]] of threadTimes() ?? []) {
    const d = (run - (before.get(t)?.[1] ?? 0)) / 1e6;
    if (d > 0.005) out[name] = +d.toFixed(2);
    if (name === 'main') out.mainRunqueue = +((wait - (before.get(t)?.[2] ?? 0)) / 1e6).toFixed(2);
  }
  return out;
}
/** SCALE_SCRAPE_DEBUG: one scrape's record; res.end() wrapped to split the rendering from the hand-over. */
function debugScrape(res) {
  const st = ssStats();
  const rec = { from: performance.now(), rendered: st?.expositionStats.rendered ?? 0, threads: threadTimes() };
  if (afterHeap !== null) {
    // the first scrape after a heap reading: what each thread did since its forced GCs ended
    rec.sinceHeap = { ms: +(rec.from - afterHeap.at).toFixed(1), threadsMs: threadsSince(afterHeap.threads) };
    afterHeap = null;
  }
  const end = res.end;
  res.end = function (...a) {
    const u0 = cpuUsage(rec.c);
    rec.renderCpuMs = (u0.user + u0.system) / 1000;
    rec.renderMs = performance.now() - rec.from;
    const t = performance.now();
    const c1 = cpuUsage();
    try {
      return end.apply(this, a);
    } finally {
      const u1 = cpuUsage(c1);
      rec.endCpuMs = (u1.user + u1.system) / 1000;
      rec.endMs = performance.now() - t;
    }
  };
  scrapeDebug.scrapes.push(rec);
  return rec;
}
function printScrapeDebug() {
  const { scrapes, gcs, refreshes } = scrapeDebug;
  let prev = -Infinity;
  for (const r of scrapes) {
    const gc = gcs.filter(([g0, d]) => g0 < (r.to ?? Infinity) && g0 + d > r.from).map(([, d, k]) => [+d.toFixed(2), k]);
    const ref = refreshes.filter(([t]) => t > prev && t <= r.from);
    const last = refreshes.filter(([t]) => t <= r.from).at(-1);
    const f = (x) => (x === undefined ? undefined : +x.toFixed(2));
    console.error('scrape-debug', JSON.stringify({ wallMs: f(r.to - r.from), threadsMs: r.threads, sinceHeap: r.sinceHeap, cpuMs: f(r.cpuMs), renderMs: f(r.renderMs), renderCpuMs: f(r.renderCpuMs), endMs: f(r.endMs), endCpuMs: f(r.endCpuMs), rendered: r.rendered, gc, refreshesSincePrev: ref.length, lastRefreshAgoMs: last === undefined ? undefined : f(r.from - last[0]) }));
    prev = r.from;
  }
  scrapes.length = 0;
  gcs.length = 0;
}
async function startScrapeProfile() {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 50 });
  await session.post('Profiler.start');
  scrapeProfile = session;
}

function json(res, body) {
  const s = JSON.stringify(body);
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(s);
}

function route(req, res) {
  const p = (req.url ?? '/').split('?')[0];
  if (p.startsWith('/plain/')) {
    plainOpen++;
    res.on('close', () => plainOpen--);
    return hold(res);
  }
  if (p.startsWith('/inst/')) {
    const k = Number(p.slice(6)) % ROUTES;
    return void insts[k](req, res);
  }
  if (p === '/burst') return void burst(req, res);
  if (p === '/metrics') {
    // the CPU this process used from the request to the handler's end (its text handed to the response)
    const rec = scrapeDebug === null ? null : debugScrape(res);
    const threads = threadsArmed ? threadTimes() : null;
    threadsArmed = false;
    const main = mainTimes();
    const c = cpuUsage();
    if (rec !== null) rec.c = c;
    return void metrics(req, res).then(() => {
      const u = cpuUsage(c);
      scrapeCpu.push((u.user + u.system) / 1000);
      const main1 = main === null ? null : mainTimes();
      if (main1 !== null) scrapeMain.push([(main1[0] - main[0]) / 1e6, (main1[1] - main[1]) / 1e6]);
      if (threads !== null) {
        const d = threadsSince(threads);
        const others = Object.entries(d).filter(([k]) => k !== 'main' && k !== 'mainRunqueue');
        threadsResult = { mainCpuMs: d.main ?? 0, mainWaitMs: d.mainRunqueue ?? 0, otherCpuMs: others.reduce((a, [, v]) => a + v, 0), otherThreads: others.length };
      }
      if (rec !== null) {
        rec.cpuMs = (u.user + u.system) / 1000;
        rec.to = performance.now();
        rec.threads = threadsSince(rec.threads);
        const st = ssStats();
        if (st !== undefined) rec.rendered = st.expositionStats.rendered - rec.rendered;
      }
      if (scrapeProfile instanceof Object && scrapeProfile !== 'armed') {
        const session = scrapeProfile;
        scrapeProfile = 'done';
        void session.post('Profiler.stop').then(async ({ profile }) => {
          (await import('node:fs')).writeFileSync(process.env.SCALE_SCRAPE_PROFILE, JSON.stringify(profile));
          session.disconnect();
        });
      }
    });
  }
  if (p === '/ctl/scrape-threads/arm') {
    threadsArmed = true;
    threadsResult = null;
    return json(res, {});
  }
  if (p === '/ctl/scrape-threads') return json(res, threadsResult ?? {});
  if (p === '/ctl/scrape-main') {
    const list = [...scrapeMain];
    scrapeMain.length = 0;
    return json(res, list);
  }
  if (p === '/ctl/scrape-cpu') {
    const list = [...scrapeCpu];
    scrapeCpu.length = 0;
    if (scrapeDebug !== null) printScrapeDebug();
    if (scrapeProfile === 'armed') return void startScrapeProfile().then(() => json(res, list));
    return json(res, list);
  }
  if (p === '/ctl/heap') {
    const heapUsed = heapAfterGc();
    if (scrapeDebug !== null) afterHeap = { at: performance.now(), threads: threadTimes() };
    return json(res, { heapUsed, rss: process.memoryUsage().rss, plainOpen, open: tracker.open.size });
  }
  if (p === '/ctl/sweep') {
    if (process.env.SCALE_SCRAPE_PROFILE && scrapeProfile === null) scrapeProfile = 'armed';
    return void timeSweeps().then((m) => json(res, m));
  }
  if (p === '/ctl/eld/start') return json(res, eldStart());
  if (p === '/ctl/eld/stop') return json(res, eldStop());
  if (p === '/ctl/burst') return void runBurst().then((m) => json(res, m));
  if (p === '/ctl/burst/closed') return json(res, { closed: burstClosed, total: burstOpen.size });
  res.statusCode = 404;
  res.end();
}

const server = H2 ? http2.createServer({ settings: { maxConcurrentStreams: 1_000_000 }, maxSessionMemory: 4096 }, route) : http.createServer(route);
// the control requests come over HTTP/1.1 in both cases
const ctl = H2 ? http.createServer(route) : server;
server.listen(0, '127.0.0.1', 8192, () => {
  const ready = () => process.stdout.write(`READY ${server.address().port} ${ctl.address().port}\n`);
  if (ctl === server) ready();
  else ctl.listen(0, '127.0.0.1', ready);
});
