#!/usr/bin/env node
// `npm run bench` (after `npm run build`): every benchmark of docs/benchmarks.md on each Node.js line the project
// measures — the machine's (Node 20 here) and Node 24 — each line in its own sections (`core-node20`,
// `broadcast-node24`, …, see bench/core/doc.mjs), then the targets table of issue 19 from both lines' raw figures
// (`<!-- targets:start -->`). Raw figures of every run: bench/results/node<N>/.
//
//   node bench/lines.mjs                     both lines, every benchmark (about 25 minutes)
//   BENCH_LINES=24 node bench/lines.mjs      one line
//   BENCH_SKIP=heap,scrape node bench/lines.mjs  without some: core, broadcast, heap, scrape
//   node bench/lines.mjs --render            the targets table again from bench/results (no measuring)
//   node bench/lines.mjs --scale | --scrape-inproc [options]   that one benchmark (bench/run.mjs), on the running Node
// A line other than the running Node's is installed from npm (`node@<N>`) into $STREAMSCOPE_NODE_DIR/node<N>
// (default /opt/streamscope-ci, as .ci/run does), once. Every benchmark compares against a baseline measured in
// the same run on the same line (bare node:http, better-sse, memlab).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { replaceSection } from './core/doc.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, '..');
const docFile = path.join(root, 'docs', 'benchmarks.md');
const lines = (process.env.BENCH_LINES ?? '20,24').split(',').map(Number);
const skip = new Set((process.env.BENCH_SKIP ?? '').split(',').filter(Boolean));
const major = (v) => Number(v.replace(/^v/, '').split('.')[0]);

/** The `node` binary of a line: the running one, or node@<N> from npm. */
function nodeOf(line) {
  if (major(process.version) === line) return process.execPath;
  const dir = path.join(process.env.STREAMSCOPE_NODE_DIR ?? '/opt/streamscope-ci', `node${line}`);
  const bin = path.join(dir, 'node_modules', 'node', 'bin', 'node');
  if (!fs.existsSync(bin)) {
    console.error(`bench: installing node@${line} into ${dir}`);
    fs.mkdirSync(dir, { recursive: true });
    execFileSync('npm', ['install', '--prefix', dir, '--no-audit', '--no-fund', '--no-save', `node@${line}`], { stdio: 'inherit' });
  }
  return bin;
}

/** Runs one benchmark under a line's node; a failed one is reported in the table, not fatal to the others. */
function step(line, name, bin, args, env, cwd = root) {
  console.error(`\n== Node ${line}: ${name}`);
  const t0 = Date.now();
  const r = spawnSync(bin, args, { cwd, stdio: 'inherit', env: { ...process.env, ...env } });
  const ok = r.status === 0;
  if (!ok) console.error(`bench: ${name} on Node ${line} failed (exit ${r.status ?? r.signal})`);
  return { ok, s: (Date.now() - t0) / 1000 };
}

function ensureDeps(dir) {
  if (!fs.existsSync(path.join(dir, 'node_modules'))) {
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit', env: { ...process.env, PUPPETEER_SKIP_DOWNLOAD: '1' } });
  }
}

const copyIf = (from, to) => {
  if (fs.existsSync(from)) fs.copyFileSync(from, to);
};

function measure(line) {
  const bin = nodeOf(line);
  const version = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  const out = path.join(root, 'bench', 'results', `node${line}`);
  fs.mkdirSync(out, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `streamscope-bench-node${line}-`));
  const env = { BENCH_SECTION_SUFFIX: `-node${line}`, TMPDIR: tmp, BENCH_DIR: tmp };
  const steps = {};
  if (!skip.has('core')) {
    steps.core = step(line, 'core (a, b, c, sweep)', bin, [path.join(here, 'run.mjs'), '--no-broadcast'], env);
    copyIf(path.join(tmp, 'streamscope-bench-core.json'), path.join(out, 'core.json'));
  }
  if (!skip.has('scrape')) {
    // the issue-19 row: /metrics with 10,000 open streams on one route, beside the bare app's, same process
    steps.scrape = step(line, 'scrape at 10,000 open streams', bin, [path.join(here, 'scale', 'run.mjs'), '--streams', process.env.BENCH_SCRAPE_STREAMS ?? '10000', '--routes', '1', '--transport', 'h1', '--burst', '0', '--workers', '0', '--scrapes', '15', '--no-doc'], env);
    copyIf(path.join(tmp, 'streamscope-bench-scale.json'), path.join(out, 'scrape.json'));
  }
  if (!skip.has('broadcast')) {
    const dir = path.join(here, 'broadcast');
    ensureDeps(dir);
    steps.broadcast = step(line, 'broadcast', bin, [path.join(dir, 'run.mjs')], env);
    copyIf(path.join(dir, 'results.json'), path.join(out, 'broadcast.json'));
  }
  if (!skip.has('heap')) {
    const dir = path.join(here, 'heap');
    ensureDeps(dir);
    // the large (>= 4 GiB) case is its own run (bench/heap/run.mjs alone; section `heap`): 18 minutes to grow
    steps.heap = step(line, 'heap analysis', bin, [path.join(dir, 'run.mjs')], { ...env, BENCH_GROW: '0' }, dir);
    copyIf(path.join(tmp, 'heap-results.json'), path.join(out, 'heap.json'));
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.writeFileSync(path.join(out, 'run.json'), JSON.stringify({ node: version, date: new Date().toISOString(), loadavg: os.loadavg(), steps }, null, 1) + '\n');
}

// ── the targets table ──
const read = (line, name) => {
  try {
    return JSON.parse(fs.readFileSync(path.join(root, 'bench', 'results', `node${line}`, `${name}.json`), 'utf8'));
  } catch {
    return null;
  }
};
const r2 = (x) => (x === undefined || x === null || Number.isNaN(x) ? '–' : x.toFixed(2));
const range = (q) => (q ? `**${r2(q.median)}** (${r2(q.min)}–${r2(q.max)})` : '–');
const verdict = (ok) => (ok === undefined ? '' : ok ? ' met' : ' **missed**');

/** One row per measure of issue 19: [measure, target text, per line: [figure text, met?]]. */
function rows() {
  const at = (line) => {
    const core = read(line, 'core');
    const scrape = read(line, 'scrape');
    const bc = read(line, 'broadcast');
    const heap = read(line, 'heap');
    const short = core?.short?.summary;
    const flood = core?.flood?.summary;
    const cpuRatio = (sum, v, key) => sum?.[v]?.[key];
    const cell = (q, target) => (q ? [range(q), q.median >= target] : ['–', undefined]);
    const idle = core?.idle?.summary?.ours?.extraHeapPerStream;
    const sc = scrape?.inst && scrape?.plain ? [scrape.inst.scrapeMedianMs, scrape.plain.scrapeMedianMs] : null;
    const an = heap?.a ? (heap.a.maxRssKB * 1024) / heap.size : undefined;
    const impl = (name) => bc?.broadcast?.find((b) => b.impl === name);
    const [ours, bsse, bare] = [impl('streamscope'), impl('better-sse'), impl('bare')];
    const t =
      ours && bsse && bare
        ? (() => {
            const vsPeer = ours.deliveredPerSec / bsse.deliveredPerSec;
            const vsBare = ours.deliveredPerSec / bare.deliveredPerSec;
            const heapRatio = ours.heapPerSubscriberBytes / bsse.heapPerSubscriberBytes;
            const cpuPeer = bsse.serverCpuNsPerEvent / ours.serverCpuNsPerEvent;
            return {
              text: `**${vsPeer.toFixed(2)}×** / **${vsBare.toFixed(2)}×**; heap **${heapRatio.toFixed(2)}×** (per server CPU-second ${cpuPeer.toFixed(2)}× better-sse)`,
              met: vsPeer >= 2 && vsBare >= 1 && heapRatio <= 0.5,
            };
          })()
        : undefined;
    return [
      cell(cpuRatio(short, 'ours', 'reqPerCpuSRatio'), 0.98),
      cell(cpuRatio(short, 'ours+trackAsync', 'reqPerCpuSRatio'), 0.9),
      cell(cpuRatio(flood, 'ours+trackAsync', 'eventsPerCpuSRatio'), 0.97),
      cell(cpuRatio(short, 'ours+captureStacks', 'reqPerCpuSRatio'), 0.95),
      cell(cpuRatio(short, 'ours+otelMetrics', 'reqPerCpuSRatio'), 0.95),
      idle ? [`**${Math.round(idle.median)} B** (${Math.round(idle.min)}–${Math.round(idle.max)})`, idle.median <= 512] : ['–', undefined],
      sc ? [`**${sc[0].toFixed(2)} ms** (bare app ${sc[1].toFixed(2)} ms)`, sc[0] <= sc[1] + 2] : ['–', undefined],
      t ? [t.text, t.met] : ['–', undefined],
      an !== undefined ? [`**${an.toFixed(2)}×** (${(heap.size / 2 ** 20).toFixed(0)} MiB file; memlab ${heap.b?.maxRssKB ? ((heap.b.maxRssKB * 1024) / heap.size).toFixed(2) + '×' : 'failed'})`, an <= 0.6] : ['–', undefined],
    ];
  };
  const names = [
    ['(b) short streams, requests per server CPU-second, defaults', '>= 0.98'],
    ['(b) with `trackAsync: true`', '>= 0.90'],
    ['(a) SSE flood with `trackAsync: true`, events per server CPU-second', '>= 0.97'],
    ['(b) with `captureStacks: true`', '>= 0.95'],
    ['(b) with an OpenTelemetry MeterProvider (`ours+otelMetrics`)', '>= 0.95'],
    ['(c) extra heap per idle open stream at 10,000 open', '<= 512 B'],
    ['`/metrics` scrape with 10,000 open streams, one route (median)', '<= 2 ms + the bare app\'s'],
    ['hub broadcast to 10,000 SSE subscribers: vs better-sse / vs a bare `res.write` loop; heap per subscriber vs better-sse', '>= 2× / >= 1.0×; <= 0.5×'],
    ['`diag analyze` peak RSS / snapshot file size', '<= 0.6×'],
  ];
  const per = lines.map((l) => at(l));
  return names.map(([n, target], i) => [n, target, per.map((p) => p[i])]);
}

function renderTargets() {
  const head = lines.map((l) => {
    const run = read(l, 'run');
    return `Node ${l}${run ? ` (${run.node}, ${run.date.slice(0, 10)})` : ''}`;
  });
  const out = [
    '## Targets of issue 19, per Node.js line',
    '',
    'Generated by `npm run bench` (`bench/lines.mjs`) from the raw figures in `bench/results/node<N>/`; each figure is a ratio to (or beside) a baseline measured in the same run on the same line; the sections below give every figure behind it. Ratios are per server CPU-second (the steadier measure on this shared machine): the median over cycles, lowest–highest in parentheses.',
    '',
    `| measure | target | ${head.join(' | ')} |`,
    `| --- | --- | ${head.map(() => '---').join(' | ')} |`,
  ];
  for (const [n, target, cells] of rows()) out.push(`| ${n} | ${target} | ${cells.map(([text, ok]) => text + verdict(ok)).join(' | ')} |`);
  return out.join('\n');
}

// `npm run bench -- --scale …` / `-- --scrape-inproc`: one benchmark of bench/run.mjs on the running Node, as documented
// (docs/reliability.md, docs/metrics.md), not the whole suite
const single = process.argv.slice(2).find((a) => a === '--scale' || a === '--scrape-inproc');
if (single !== undefined) {
  const r = spawnSync(process.execPath, [path.join(here, 'run.mjs'), ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
if (!process.argv.includes('--render')) {
  if (!fs.existsSync(path.join(root, 'dist', 'esm', 'index.js'))) {
    console.error('bench: dist/esm/index.js is missing; run `npm run build` first (npm run bench does).');
    process.exit(1);
  }
  for (const line of lines) measure(line);
}
fs.writeFileSync(docFile, replaceSection(fs.readFileSync(docFile, 'utf8'), 'targets', renderTargets()));
console.log(`wrote ${path.relative(root, docFile)} (targets section)`);
