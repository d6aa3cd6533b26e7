// In-process measure of a `/metrics` scrape with many routes (issue 19, "Many routes"): one registry holding
// streamscope's metric set with ROUTES routes and every series populated (four outcomes, every leak kind, resume
// result, reject reason and guard, write gaps), scraped SAMPLES times in this process, with no HTTP and no open
// stream (the scrape never walks streams). Each round times, interleaved:
//   handler    metricsHandler(registry) into a stub response (what `/metrics` serves)
//   handler changed   the same after every histogram child observed once more (none of its cached text reusable)
//   handler cold      afterwards, the first scrape of each of COLD (default 10) new registries of the same content,
//                     right after its handler is made
//   handler first     the same, a second after (the handler's pre-render, off the request path, has run)
//   registry   registry.metrics(): the client formats everything (what an app serving its register itself gets)
// (every text is encoded to UTF-8 once, as the response's write does)
//   get        our metrics' get()/collect() alone (object building), the part of `registry` that is ours
//   plain      the same number of series in plain prom-client metrics (Counter, Gauge, Histogram), metrics()
// and the GC time (PerformanceObserver 'gc' entries) that fell within each. Prints a table and JSON.
//
//   node bench/scale/scrape-inproc.mjs                       dist/esm of this checkout (npm run build first)
//   SCRAPE_DIST_BEFORE=/tmp/base/dist/esm/index.js node bench/scale/scrape-inproc.mjs
//                                                            the same rounds on a second build too (before/after)
//   ROUTES=200 SAMPLES=300 OPEN=0 node bench/scale/scrape-inproc.mjs
//   node bench/scale/scrape-inproc.mjs --doc                 also writes the figures into docs/metrics.md
//                                                            (section `scrape-inproc`)
// `npm run bench -- --scrape-inproc` runs it with --doc (bench/run.mjs).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const ROUTES = Number(process.env.ROUTES ?? 200);
const SAMPLES = Number(process.env.SAMPLES ?? 300);
const DIST = process.env.STREAMSCOPE_DIST ?? path.join(root, 'dist', 'esm', 'index.js');
const BEFORE = process.env.SCRAPE_DIST_BEFORE;
const COLD = Number(process.env.COLD ?? 10);
const require = createRequire(path.join(root, 'package.json'));
const prom = require('prom-client');

const OUTCOMES = ['completed', 'client_aborted', 'error', 'timeout'];
const KINDS = ['stalled_write', 'dangling_stream', 'zombie_producer', 'dangling_async', 'buffered_stream'];

/** A registry with streamscope's set from the build at `dist`, every series of ROUTES routes populated. */
async function ourRegistry(dist) {
  const mod = await import(pathToFileURL(dist).href);
  const registry = new prom.Registry();
  // instrument() creates the registry's metric set; its routes are then filled through the set's own methods
  mod.instrument(() => {}, { registry, route: '/inst/0' });
  const set = registry[Symbol.for('streamscope.metrics')].get('');
  for (let k = 0; k < ROUTES; k++) {
    const rm = set.route(`/inst/${k}`);
    for (const m of ['GET', 'POST']) for (let i = 0; i < 3; i++) rm.started(m);
    for (const o of OUTCOMES) for (let i = 0; i < 5; i++) rm.duration('GET', o).observe(0.03 * (i + 1) ** 3 + k);
    for (let i = 0; i < 7; i++) {
      rm.firstWrite.observe(0.002 * (i + 1) ** 2);
      rm.firstByte.observe(0.003 * (i + 1) ** 2);
      rm.longestGap.observe(0.01 * (i + 1) ** 3);
      rm.blockedSeconds.observe(0.004 * (i + 1) ** 3);
      rm.writeGap().observe(0.006 * (i + 1) ** 3);
    }
    for (const kind of KINDS) rm.leak(kind).inc(k % 3);
    rm.resume('replayed').inc(2);
    rm.usesRejections(['rate_limited', 'overloaded']);
    rm.rejected('overloaded').inc();
    rm.guardAction('maxBufferedBytes').inc();
    rm.totals.bytes += 1000 * k + 17;
    rm.totals.writes += k + 3;
    rm.totals.blocked += k % 5;
    rm.active = k % 7;
  }
  // every histogram child of every route observes once more: the worst case for the handler's cached text
  const touch = () => {
    for (let k = 0; k < ROUTES; k++) {
      const rm = set.route(`/inst/${k}`);
      for (const o of OUTCOMES) rm.duration('GET', o).observe(0.2);
      for (const h of [rm.firstWrite, rm.firstByte, rm.longestGap, rm.blockedSeconds, rm.writeGap()]) h.observe(0.01);
    }
  };
  return { registry, handler: mod.metricsHandler(registry), set, touch };
}

/** The same series count in plain prom-client metrics (the client formatting its own objects). */
async function plainRegistry(count) {
  const registry = new prom.Registry();
  const h = new prom.Histogram({ name: 'plain_seconds', help: 'h', labelNames: ['route', 'method', 'outcome'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400], registers: [registry] });
  const c = new prom.Counter({ name: 'plain_total', help: 'c', labelNames: ['route', 'kind'], registers: [registry] });
  let n = 0;
  for (let k = 0; n < count; k++) {
    for (const o of OUTCOMES) {
      if (n >= count) break;
      h.observe({ route: `/inst/${k}`, method: 'GET', outcome: o }, k / 10);
      n += 20;
    }
    for (let i = 0; i < 10 && n < count; i++, n++) c.inc({ route: `/inst/${k}`, kind: `k${i}` });
  }
  return registry;
}

/**
 * A response that keeps the body and encodes it as a socket write would (a string is flattened and encoded there;
 * a Buffer is written as it is).
 */
function stubRes() {
  return { statusCode: 0, body: '', setHeader() {}, end(b) { this.body = b; this.encoded = typeof b === 'string' ? Buffer.from(b) : b; } };
}
/** registry.metrics() with the same encoding as the handler's response. */
const encoded = (p) => p.then((b) => (Buffer.from(b), b));

const gcs = [];
new PerformanceObserver((list) => gcs.push(...list.getEntries().map((e) => [e.startTime, e.duration]))).observe({ entryTypes: ['gc'] });

/** Wall time, and this process's CPU time (a shared machine's load stretches the first, not the second). */
async function timed(fn) {
  const c = process.cpuUsage();
  const t = performance.now();
  const out = await fn();
  const t1 = performance.now();
  const cu = process.cpuUsage(c);
  return { ms: t1 - t, cpuMs: (cu.user + cu.system) / 1000, t0: t, t1, out };
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];

async function main() {
  const variants = [];
  const add = (label, fn, prep) => variants.push({ label, fn, prep, times: [], cpu: [], gc: [] });
  const after = await ourRegistry(DIST);
  let before;
  if (BEFORE) before = await ourRegistry(BEFORE);
  const first = await after.registry.metrics();
  const series = first.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
  const plain = await plainRegistry(series);
  const plainSeries = (await plain.metrics()).split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
  add('handler', async () => {
    const res = stubRes();
    await after.handler({}, res);
    return res.body;
  });
  add(
    'handler changed',
    async () => {
      const res = stubRes();
      await after.handler({}, res);
      return res.body;
    },
    after.touch,
  );
  add('registry', () => encoded(after.registry.metrics()));
  add('get', () => Promise.all(after.registry.getMetricsAsArray().map((m) => m.get())));
  if (before) {
    add('before handler', async () => {
      const res = stubRes();
      await before.handler({}, res);
      return res.body;
    });
    add('before registry', () => encoded(before.registry.metrics()));
    add('before get', () => Promise.all(before.registry.getMetricsAsArray().map((m) => m.get())));
  }
  add('plain', () => encoded(plain.metrics()));
  // warm-up, then interleaved rounds; the observer's entries are delivered later, so GC is matched afterwards
  for (let i = 0; i < 20; i++) for (const v of variants) await v.fn();
  const windows = [];
  for (let i = 0; i < SAMPLES; i++) {
    for (const v of variants) {
      v.prep?.();
      const r = await timed(v.fn);
      v.times.push(r.ms);
      v.cpu.push(r.cpuMs);
      windows.push([v, r.t0, r.t1]);
    }
    if (i % 10 === 9) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 50));
  for (const v of variants) v.gcMs = 0;
  for (const [start, dur] of gcs) {
    for (const [v, t0, t1] of windows) if (start >= t0 && start < t1) v.gcMs += dur;
  }
  const body = String(await variants[0].fn());
  // the handler's text is the registry's, byte for byte (the state does not change between the two)
  const identical = body === (await after.registry.metrics());
  // cold: a registry the handler has never seen (its escaping probed, every series rendered for the first time),
  // COLD of them, each scraped once (its build and the rounds above have warmed the code: this is not a JIT's cold);
  // first: the same, scraped a second after its handler was made (the handler's pre-render has run meanwhile)
  for (const [label, waitMs] of [['handler cold', 0], ['handler first', 1000]]) {
    const cold = { label, times: [], cpu: [], gc: [], samples: COLD };
    for (let i = 0; i < COLD; i++) {
      const fresh = await ourRegistry(DIST);
      await new Promise((r) => setImmediate(r));
      if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
      const r = await timed(async () => {
        const res = stubRes();
        await fresh.handler({}, res);
        return res.body;
      });
      cold.times.push(r.ms);
      cold.cpu.push(r.cpuMs);
      windows.push([cold, r.t0, r.t1]);
    }
    await new Promise((r) => setTimeout(r, 50));
    cold.gcMs = 0;
    for (const [start, dur] of gcs) for (const [v, t0, t1] of windows) if (v === cold && start >= t0 && start < t1) cold.gcMs += dur;
    variants.push(cold);
  }
  const result = { routes: ROUTES, samples: SAMPLES, series, plainSeries, bytes: Buffer.byteLength(body), identical, node: process.version, rows: {} };
  for (const v of variants) {
    const s = [...v.times].sort((a, b) => a - b);
    const c = [...v.cpu].sort((a, b) => a - b);
    result.rows[v.label] = { samples: v.samples ?? SAMPLES, medianMs: pct(s, 50), p99Ms: pct(s, 99), maxMs: s[s.length - 1], cpuMedianMs: pct(c, 50), cpuP99Ms: pct(c, 99), gcMsPerScrape: v.gcMs / (v.samples ?? SAMPLES) };
  }
  return result;
}

const r = await main();
if (process.argv.includes('--doc')) {
  const { replaceSection } = await import('../core/doc.mjs');
  const { execFileSync } = await import('node:child_process');
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    /* not a checkout */
  }
  const ms = (v) => `${v.toFixed(2)} ms`;
  const row = (label, what) => {
    const v = r.rows[label];
    return v === undefined ? [] : [`| ${what} | ${ms(v.medianMs)} / ${ms(v.p99Ms)} | ${ms(v.cpuMedianMs)} / ${ms(v.cpuP99Ms)} | ${ms(v.gcMsPerScrape)} |`];
  };
  const body = [
    `Generated by \`node bench/scale/scrape-inproc.mjs --doc\` (\`npm run bench -- --scrape-inproc\`) on ${new Date().toISOString().slice(0, 10)}, commit ${commit}, Node ${r.node}, ${os.cpus().length} CPUs, load average at start ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}.`,
    `One registry, ${r.routes} routes with every series of streamscope's populated: ${r.series.toLocaleString('en-US')} series, ${r.bytes.toLocaleString('en-US')} B; ${r.samples} scrapes of each kind, interleaved, in one process, no HTTP. metricsHandler()'s text identical to registry.metrics(): ${r.identical ? 'yes' : '**no**'}.`,
    '',
    '| scrape | wall median / p99 | CPU median / p99 | GC per scrape |',
    '| --- | --- | --- | --- |',
    ...row('handler', '`metricsHandler()` (streamscope renders its own series)'),
    ...row('handler changed', '`metricsHandler()`, every histogram child changed since the scrape before'),
    ...row('handler first', `\`metricsHandler()\`, first scrape of a new registry a second after its handler was made (pre-rendered meanwhile): ${r.rows['handler first']?.samples ?? 0} registries`),
    ...row('handler cold', `\`metricsHandler()\`, first scrape of a new registry right after its handler was made (probe, every series rendered in the scrape): ${r.rows['handler cold']?.samples ?? 0} registries`),
    ...row('registry', '`registry.metrics()` (the client formats every series)'),
    ...row('get', '  of which our `get()`/`collect()` (object building)'),
    ...row('before handler', '`metricsHandler()`, build before (SCRAPE_DIST_BEFORE)'),
    ...row('before registry', '`registry.metrics()`, build before'),
    ...row('plain', `plain prom-client metrics, ${r.plainSeries.toLocaleString('en-US')} series, \`registry.metrics()\``),
  ].join('\n');
  const doc = path.join(root, 'docs', 'metrics.md');
  fs.writeFileSync(doc, replaceSection(fs.readFileSync(doc, 'utf8'), 'scrape-inproc', body));
}
if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(r)}\n`);
else {
  console.log(`${r.routes} routes, ${r.series} series (${r.bytes} B, handler's text identical to registry.metrics(): ${r.identical}); plain prom-client: ${r.plainSeries} series; ${r.samples} rounds, ${r.node}`);
  for (const [k, v] of Object.entries(r.rows)) console.log(`${k.padEnd(16)} median ${v.medianMs.toFixed(2)} ms  p99 ${v.p99Ms.toFixed(2)} ms  max ${v.maxMs.toFixed(2)} ms  CPU median ${v.cpuMedianMs.toFixed(2)} ms p99 ${v.cpuP99Ms.toFixed(2)} ms  gc/scrape ${v.gcMsPerScrape.toFixed(2)} ms`);
}
