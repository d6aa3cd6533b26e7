// Heap analysis benchmark: streamscope's analyzer beside @memlab/heap-analysis on the same snapshot, in the
// same run, then streamscope alone on a snapshot of >= 4 GiB. Writes its section (`<!-- heap:start -->` …
// `<!-- heap:end -->`) of docs/benchmarks.md.
//   cd bench/heap && PUPPETEER_SKIP_DOWNLOAD=1 npm install && node run.mjs [SNAPSHOT]
//   node run.mjs --render heap-results.json   (the section again from a run's recorded figures)
// Without SNAPSHOT it generates one of ~800 MB (BENCH_OBJECTS small objects, default 3,000,000) with
// make-snapshot.mjs. The large one is that snapshot grown BENCH_GROW times (default 6; 0 skips it) by
// grow-snapshot.mjs (V8 would need ~4.7x the file in memory to write it), or BENCH_GROWN if that file exists;
// a file this run generated is deleted at the end. Each tool runs in its own process, one after the other.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { replaceSection } from '../core/doc.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, '../..');
const work = process.env.BENCH_DIR ?? path.join(os.tmpdir(), 'streamscope-bench');
fs.mkdirSync(work, { recursive: true });
let results;
if (process.argv[2] === '--render') {
  // the section again from a run's recorded figures (heap-results.json), without measuring
  results = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
} else {
  results = measure();
  fs.writeFileSync(path.join(work, 'heap-results.json'), JSON.stringify(results, null, 1));
}

function measure() {
  let snapshot = process.argv[2];
  if (!snapshot) {
    snapshot = path.join(work, 'big.heapsnapshot');
    if (!fs.existsSync(snapshot)) {
      console.error('generating the snapshot…');
      execFileSync(process.execPath, ['--max-old-space-size=12000', path.join(here, 'make-snapshot.mjs'), snapshot, process.env.BENCH_OBJECTS ?? '3000000'], {
        cwd: work,
        stdio: ['ignore', 'inherit', 'inherit'],
      });
    }
  }
  const size = fs.statSync(snapshot).size;
  const load = os.loadavg()[0].toFixed(1);
  console.error(`snapshot ${snapshot}: ${(size / 2 ** 20).toFixed(0)} MiB`);

  // bundle our analyzer the way the CLI is bundled
  const ours = path.join(work, 'ours.mjs');
  execFileSync(path.join(root, 'node_modules/.bin/esbuild'), [path.join(here, 'ours.ts'), '--bundle', '--platform=node', '--format=esm', `--outfile=${ours}`, '--log-level=warning']);

  const run = (args) => JSON.parse(execFileSync(process.execPath, args, { cwd: here, maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] }).toString());
  console.error('streamscope…');
  const a = run([ours, snapshot]);
  console.error(JSON.stringify(a));
  console.error('@memlab/heap-analysis…');
  let b;
  try {
    b = run(['--max-old-space-size=16000', path.join(here, 'memlab.mjs'), snapshot]);
  } catch (err) {
    b = { tool: '@memlab/heap-analysis', failed: String(err.message).split('\n')[0] };
  }
  console.error(JSON.stringify(b));

  // the large snapshot
  const grow = Number(process.env.BENCH_GROW ?? 6);
  let big = null;
  let bigSize = 0;
  let made = null;
  if (grow > 1 || process.env.BENCH_GROWN) {
    let file = process.env.BENCH_GROWN;
    if (!file || !fs.existsSync(file)) {
      file = path.join(work, `grown-x${grow}.heapsnapshot`);
      console.error(`growing the snapshot ${grow}x (${((size * grow) / 2 ** 30).toFixed(1)} GiB)…`);
      const t0 = performance.now();
      const g = JSON.parse(execFileSync(process.execPath, [path.join(here, 'grow-snapshot.mjs'), snapshot, file, String(grow)], { stdio: ['ignore', 'pipe', 'inherit'] }).toString());
      made = { ...g, ms: performance.now() - t0 };
    }
    bigSize = fs.statSync(file).size;
    const need = bigSize * 0.7;
    if (os.freemem() < need) console.error(`skipping the ${(bigSize / 2 ** 30).toFixed(1)} GiB analysis: ${(os.freemem() / 2 ** 30).toFixed(1)} GiB free`);
    else {
      console.error('streamscope on the large snapshot…');
      big = run([ours, file]);
      console.error(JSON.stringify(big));
    }
    if (made) fs.rmSync(file, { force: true });
  }
  return { size, load, a, b, big, bigSize, made, grow, node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '', total: os.totalmem() };
}
const { size, load, a, b, big, bigSize, made, grow } = results;
/** `kind ×count` per finding kind, with the number of findings when several (one per copy of a grown snapshot). */
const findings = (r) => {
  const by = new Map();
  for (const f of r.findings) {
    const [kind, count] = f.split(':');
    const x = by.get(kind) ?? { n: 0, count: 0 };
    x.n++;
    x.count += Number(count);
    by.set(kind, x);
  }
  return [...by].map(([kind, x]) => `${kind} ×${x.count}${x.n > 1 ? ` (${x.n} findings)` : ''}`).join(', ');
};
const mib = (kb) => `${(kb / 1024).toFixed(0)} MiB`;
const gib = (bytes) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
const row = (label, r, bytes) =>
  `| ${label} | ${(bytes / 2 ** 20).toFixed(0)} MiB | ${r.nodes.toLocaleString('en')} | ${(r.ms / 1000).toFixed(1)} s | ${(r.cpuMs / 1000).toFixed(1)} s | ${mib(r.maxRssKB)} | ${((r.maxRssKB * 1024) / bytes).toFixed(2)} |`;
const lines = [
  '## Heap analysis',
  '',
  `Generated by \`bench/heap/run.mjs\`. Node ${results.node}, ${results.cpus} CPUs, ${results.cpu}; load average ${load} when the run started (a shared machine: wall times stretch with load, CPU time and memory do not). ` +
    'Each tool in its own process, one after the other; peak RSS from `process.resourceUsage().maxRSS`, CPU time (user + system) from `process.cpuUsage()`. ' +
    `Snapshot: written by V8 (\`bench/heap/make-snapshot.mjs\`: small objects in Maps plus 20 leaked responses), ${(size / 2 ** 20).toFixed(0)} MiB.`,
  '',
  '| tool | snapshot | nodes | wall time | CPU time | peak RSS | peak RSS / file size |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  row('streamscope `diag analyze` (parse, dominators, retained sizes, paths, findings)', a, size),
  b.failed
    ? `| @memlab/heap-analysis \`getFullHeapFromFile\` | ${(size / 2 ** 20).toFixed(0)} MiB | failed: ${b.failed} | | | | |`
    : row('@memlab/heap-analysis `getFullHeapFromFile` (parse, dominators, retained sizes)', b, size),
  big ? row(`streamscope \`diag analyze\`, the snapshot grown ${made ? made.copies : grow}× (${gib(bigSize)})`, big, bigSize) : '',
  '',
  b.failed ? '' : `On the same file streamscope uses ${(b.maxRssKB / a.maxRssKB).toFixed(1)}× less memory than memlab and ${(b.cpuMs / a.cpuMs).toFixed(1)}× less CPU time. Findings: ${findings(a)}.`,
  big
    ? `The large snapshot (${gib(bigSize)}, ${big.nodes.toLocaleString('en')} nodes, ${big.edges.toLocaleString('en')} edges) is the V8 one above grown by \`bench/heap/grow-snapshot.mjs\`: ` +
      "V8's root once and the rest of the heap copied, ids, edge targets and source locations shifted per copy, so every copy has the shape V8 wrote " +
      `(writing ${gib(bigSize)} with V8 itself would need about 4.7× that in memory: 3.8 GB peak measured for an 800 MB snapshot)${made ? `; growing it took ${(made.ms / 1000).toFixed(0)} s` : ''}. ` +
      `streamscope analyzed it in ${(big.ms / 1000).toFixed(0)} s (${(big.cpuMs / 1000).toFixed(0)} s of CPU) at a peak of ${mib(big.maxRssKB)}, ${((big.maxRssKB * 1024) / bigSize).toFixed(2)}× the file. Findings: ${findings(big)}. ` +
      `memlab was not run on it: at its ${b.failed ? '' : `${((b.maxRssKB * 1024) / size).toFixed(1)}× `}the file it would need about ${gib(((b.failed ? 4.4 : (b.maxRssKB * 1024) / size) * bigSize))} of this shared machine's ${gib(results.total)}.`
    : '',
  '',
  'Regenerate: `cd bench/heap && PUPPETEER_SKIP_DOWNLOAD=1 npm install && node run.mjs` (`BENCH_GROW=0` skips the large snapshot).',
];
const doc = path.join(root, 'docs/benchmarks.md');
const text = fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8') : '';
fs.writeFileSync(doc, replaceSection(text, 'heap', lines.filter((l, i, all) => l !== '' || all[i - 1] !== '').join('\n')));
console.error(`wrote ${doc}`);
