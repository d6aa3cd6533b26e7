#!/usr/bin/env node
// The core benchmark of issues 2 and 3 (after `npm run build`), then the broadcast one; regenerates their sections
// of docs/benchmarks.md. `npm run bench` runs this once per Node.js line through bench/lines.mjs (sections
// `core-node20`, `core-node24`, …); run alone, it writes the sections of the running line the same way when
// BENCH_SECTION_SUFFIX is set, else the unsuffixed ones.
//
//   node bench/run.mjs                   everything (about 6 minutes)
//   node bench/run.mjs --only=flood,idle  some scenarios: flood, short, idle, sweep
//   node bench/run.mjs --no-doc           print, do not touch docs/benchmarks.md
//   node bench/run.mjs --from=FILE        re-render the section from a saved raw result (no measuring)
//   node bench/run.mjs --scale [opts]     the scale bench instead (bench/scale/run.mjs; docs/reliability.md)
//   node bench/run.mjs --scrape-inproc    the in-process /metrics scrape, 200 routes (docs/metrics.md)
//   node bench/run.mjs --no-broadcast     without the broadcast benchmark (bench/broadcast/run.mjs), which a full run ends with
//   BENCH_CYCLES=12 node bench/run.mjs    more cycles (also BENCH_SLICE_MS, BENCH_SLICE_S, BENCH_IDLE_CONNS,
//                                         BENCH_IDLE_ROUNDS)
// Every run saves its raw results to $TMPDIR/streamscope-bench-core.json; a full run also to
// bench/core/results.json, next to the doc it regenerates.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { runCore } from './core/index.mjs';
import { renderCore, renderReading } from './core/report.mjs';
import { root } from './core/harness.mjs';
import { replaceSection } from './core/doc.mjs';

const args = process.argv.slice(2);
// `npm run bench -- --scale [options]`: the scale bench instead (bench/scale/run.mjs, docs/reliability.md)
if (args.includes('--scale')) {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [new URL('./scale/run.mjs', import.meta.url).pathname, ...args.filter((a) => a !== '--scale')], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
// `npm run bench -- --scrape-inproc`: the in-process /metrics scrape with 200 routes (docs/metrics.md, "Scrape cost")
if (args.includes('--scrape-inproc')) {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [new URL('./scale/scrape-inproc.mjs', import.meta.url).pathname, '--doc'], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
const onlyArg = args.find((a) => a.startsWith('--only='));
const only = onlyArg ? onlyArg.slice('--only='.length).split(',') : undefined;
const writeDoc = !args.includes('--no-doc') && only === undefined;

if (!args.some((a) => a.startsWith('--from=')) && !fs.existsSync(path.join(root, 'dist', 'esm', 'index.js'))) {
  console.error('bench: dist/esm/index.js is missing; run `npm run build` first (npm run bench does).');
  process.exit(1);
}

const fromArg = args.find((a) => a.startsWith('--from='));
let res;
if (fromArg) {
  res = JSON.parse(fs.readFileSync(fromArg.slice('--from='.length), 'utf8'));
} else {
  // The commit is read before measuring (a commit made while the bench runs must not name this run), and marked
  // `+dirty` when src/ differs from it, because the build measured is dist/ from the working tree.
  let commit;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    if (execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: root, encoding: 'utf8' }).trim() !== '') commit += '+dirty';
  } catch {
    /* not a checkout */
  }
  res = await runCore({ only });
  if (commit !== undefined) res.machine.commit = commit;
  try {
    res.machine.fdLimit = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  } catch {
    /* unknown */
  }
  const raw = path.join(os.tmpdir(), 'streamscope-bench-core.json');
  fs.writeFileSync(raw, JSON.stringify(res, null, 2));
  console.log(`raw results: ${raw}`);
  // The full run behind the committed doc keeps its raw figures next to the code.
  if (writeDoc) fs.writeFileSync(path.join(root, 'bench', 'core', 'results.json'), JSON.stringify(res, null, 2) + '\n');
}

const notesFile = path.join(root, 'bench', 'core', 'notes.md');
const notes = fs.existsSync(notesFile) ? '\n' + fs.readFileSync(notesFile, 'utf8').trim() + '\n' : '';
const section = renderCore(res) + '\n' + renderReading(res) + notes;

if (writeDoc) {
  const doc = path.join(root, 'docs', 'benchmarks.md');
  const before = fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8') : '';
  fs.writeFileSync(doc, replaceSection(before, 'core', section));
  console.log(`wrote ${path.relative(root, doc)} (core section)`);
} else {
  console.log(section);
}

// Issue 19: the broadcast benchmark (bench/broadcast, its own package so that its peers never reach users)
// regenerates its own section, `<!-- broadcast:start -->`; `--no-broadcast` skips it.
if (!fromArg && only === undefined && !args.includes('--no-broadcast')) {
  const dir = path.join(root, 'bench', 'broadcast');
  if (!fs.existsSync(path.join(dir, 'node_modules'))) execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
  execFileSync(process.execPath, [path.join(dir, 'run.mjs'), ...(writeDoc ? [] : ['--no-doc'])], { cwd: root, stdio: 'inherit' });
}
