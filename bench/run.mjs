#!/usr/bin/env node
// `npm run bench` (after `npm run build`): runs the core benchmark of issues 2 and 3 and regenerates
// its section of docs/benchmarks.md. Sections owned by other benchmarks are preserved as they are.
//
//   node bench/run.mjs                   everything (about 6 minutes)
//   node bench/run.mjs --only=flood,idle  some scenarios: flood, short, idle, sweep
//   node bench/run.mjs --no-doc           print, do not touch docs/benchmarks.md
//   node bench/run.mjs --from=FILE        re-render the section from a saved raw result (no measuring)
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
  res = await runCore({ only });
  try {
    res.machine.commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    /* not a checkout */
  }
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
