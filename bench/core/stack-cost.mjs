#!/usr/bin/env node
// What one captured stack costs (captureStacks: one per stream at writeHead/first write; trackAsync: one per
// Timeout), and where that cost comes from. Each case runs in its own child process: a call chain `depth` frames
// deep ends in `hook()` (standing for streamscope's patchedWriteHead), which captures the stack below itself,
// keeping `keep` frames, in the case's way; the same chain with no capture is the baseline.
//
//   node bench/core/stack-cost.mjs [group ...]       CPU ns per capture over the baseline (children run in turn,
//                                                   3 times, 5 rounds each; median, and min-max)
//   STACK_COST_CALLGRIND=1 node bench/core/stack-cost.mjs [group ...]   (STACK_COST_N: captures per child)
//                                                   instructions per capture instead: each child once under
//                                                   `valgrind --tool=callgrind`, the instructions spent inside
//                                                   the capturing builtin (Error.captureStackTrace, the Error
//                                                   constructor or getCallSites, inclusive) / the captures made
//                                                   (the whole program's difference between two runs is not
//                                                   used: a GC more or less in one of them outweighs a capture)
//
// groups (default: all):
//   how     the holder and the API: an object literal (streamscope before), a class instance, Object.create(null),
//           new Error(), the limit left set instead of toggled around each capture, util.getCallSites (Node >= 22.9)
//   depth   the real stack's depth (10/30/60) with the same kept frames (8), and kept frames 0/1/2/4/8/16 at depth 30;
//           the same with its top 8 frames small functions that TurboFan inlines into one physical frame
//   async   a shallow stack under awaits: fewer sync frames than kept, so V8 goes on into the async chain
//   env     the process around it: Error.prepareStackTrace set, --trace-uncaught, an inspector session with
//           Runtime enabled (both make V8 also record a detailed trace for every capture), --stack-trace-limit=8
//   heap    bytes kept per unformatted capture (100,000 kept, after GC), by kept frames and holder
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);

if (process.env.STACK_CHILD) {
  const c = JSON.parse(process.env.STACK_CHILD);
  const N = Number(process.env.STACK_N);
  const keep = c.keep ?? 8;
  if (c.prepare) Error.prepareStackTrace = (e, frames) => `${e}\n${frames.map((f) => `    at ${f}`).join('\n')}`;
  if (c.inspector) {
    const { Session } = await import('node:inspector');
    const s = new Session();
    s.connect();
    await new Promise((r) => s.post('Runtime.enable', r));
    globalThis.keepSession = s;
  }
  if (c.how === 'notoggle') Error.stackTraceLimit = keep;
  const getCallSites = c.how === 'callsites' ? (await import('node:util')).getCallSites : null;
  class Holder {}
  const sink = (globalThis.sink = []); // global: a dead local would be collected
  let last;
  const hook = {
    none() {
      last = {};
    },
    literal() {
      const h = {};
      const saved = Error.stackTraceLimit;
      Error.stackTraceLimit = keep;
      Error.captureStackTrace(h, hook.literal);
      Error.stackTraceLimit = saved;
      last = h;
    },
    notoggle() {
      const h = {};
      Error.captureStackTrace(h, hook.notoggle);
      last = h;
    },
    klass() {
      const h = new Holder();
      const saved = Error.stackTraceLimit;
      Error.stackTraceLimit = keep;
      Error.captureStackTrace(h, hook.klass);
      Error.stackTraceLimit = saved;
      last = h;
    },
    nullproto() {
      const h = Object.create(null);
      const saved = Error.stackTraceLimit;
      Error.stackTraceLimit = keep;
      Error.captureStackTrace(h, hook.nullproto);
      Error.stackTraceLimit = saved;
      last = h;
    },
    error() {
      const saved = Error.stackTraceLimit;
      Error.stackTraceLimit = keep + 1; // hook's own frame is kept too
      const h = new Error();
      Error.stackTraceLimit = saved;
      last = h;
    },
    callsites() {
      last = getCallSites(keep + 1);
    },
  }[c.how];
  // a chain `depth` frames deep (distinct functions would be more realistic; one recursive function is what V8
  // cannot inline away, so every level is a real frame)
  function down(n) {
    if (n <= 1) {
      hook();
      return 1;
    }
    return down(n - 1) + 1;
  }
  async function asyncDown(n) {
    if (n <= 1) {
      hook();
      return 1;
    }
    await null;
    return (await asyncDown(n - 1)) + 1;
  }
  // the same depth made of small distinct functions, which TurboFan inlines into their caller: many logical
  // frames (each one kept as a frame of the stack) in few physical ones (each one decoded once)
  const f8 = () => (hook(), 1);
  const f7 = () => f8() + 1;
  const f6 = () => f7() + 1;
  const f5 = () => f6() + 1;
  const f4 = () => f5() + 1;
  const f3 = () => f4() + 1;
  const f2 = () => f3() + 1;
  const f1 = () => f2() + 1;
  const inlined = (n) => (n <= 8 ? f1() : inlined(n - 1) + 1);
  const depth = c.depth ?? 30;
  if (c.heap) {
    // bytes kept per unformatted capture: N holders kept alive, heapUsed after GC against the same without capture
    const gc = globalThis.gc;
    gc();
    gc();
    const h0 = process.memoryUsage().heapUsed;
    for (let i = 0; i < N; i++) {
      down(depth);
      sink.push(last);
    }
    gc();
    gc();
    process.stdout.write(String((process.memoryUsage().heapUsed - h0) / N));
    process.exit(0);
  }
  const run = async (n) => {
    if (c.async) for (let i = 0; i < n; i++) await asyncDown(depth);
    else if (c.inlined) for (let i = 0; i < n; i++) inlined(depth);
    else for (let i = 0; i < n; i++) down(depth);
  };
  await run(process.env.STACK_ONLY ? 3000 : 10000); // warm-up: every function optimized before the timed rounds
  if (process.env.STACK_ONLY) {
    // under callgrind: only the captures (the difference between two children of N and 2N is per capture)
    await run(N);
    process.exit(0);
  }
  const rounds = [];
  for (let k = 0; k < 5; k++) {
    const c0 = process.cpuUsage();
    await run(N);
    const d = process.cpuUsage(c0);
    rounds.push(((d.user + d.system) * 1000) / N);
  }
  rounds.sort((a, b) => a - b);
  process.stdout.write(String(rounds[2]));
  process.exit(0);
} else {
  const major = Number(process.versions.node.split('.')[0]);
  const minor = Number(process.versions.node.split('.')[1]);
  const hasCallSites = major > 22 || (major === 22 && minor >= 9);
  const groups = {
    how: [
      { name: 'none (baseline)', how: 'none' },
      { name: 'object literal, limit toggled (before)', how: 'literal' },
      { name: 'object literal, limit left at 8', how: 'notoggle' },
      { name: 'class instance, limit toggled', how: 'klass' },
      { name: 'Object.create(null), limit toggled', how: 'nullproto' },
      { name: 'new Error(), limit toggled', how: 'error' },
      ...(hasCallSites ? [{ name: 'util.getCallSites(9)', how: 'callsites' }] : []),
    ],
    depth: [
      ...[10, 60].flatMap((depth) => [
        { name: `depth ${depth}: none (baseline)`, how: 'none', depth },
        { name: `depth ${depth}: keep 8`, how: 'literal', depth },
      ]),
      { name: 'depth 30: none (baseline)', how: 'none' },
      ...[0, 1, 2, 4, 8, 16].map((keep) => ({ name: `depth 30: keep ${keep}`, how: 'literal', keep })),
      { name: 'depth 30, 8 inlined: none (baseline)', how: 'none', inlined: true },
      ...[1, 4, 8, 9, 16].map((keep) => ({ name: `depth 30, 8 inlined: keep ${keep}`, how: 'literal', keep, inlined: true })),
    ],
    async: [
      { name: 'async depth 3: none (baseline)', how: 'none', depth: 3, async: true },
      ...[2, 3, 8].map((keep) => ({ name: `async depth 3: keep ${keep}`, how: 'literal', depth: 3, keep, async: true })),
      { name: 'async depth 3: keep 8, --no-async-stack-traces', how: 'literal', depth: 3, async: true, flags: ['--no-async-stack-traces'] },
    ],
    env: [
      { name: 'none (baseline)', how: 'none' },
      { name: 'keep 8 (as streamscope)', how: 'literal' },
      { name: 'keep 8, Error.prepareStackTrace set', how: 'literal', prepare: true },
      { name: 'none, --trace-uncaught (baseline)', how: 'none', flags: ['--trace-uncaught'] },
      { name: 'keep 8, --trace-uncaught', how: 'literal', flags: ['--trace-uncaught'] },
      { name: 'none, inspector Runtime.enable (baseline)', how: 'none', inspector: true },
      { name: 'keep 8, inspector Runtime.enable', how: 'literal', inspector: true },
      { name: 'none, --stack-trace-limit=8 (baseline)', how: 'none', flags: ['--stack-trace-limit=8'] },
      { name: 'keep 8, --stack-trace-limit=8, no toggle', how: 'notoggle', flags: ['--stack-trace-limit=8'] },
    ],
    heap: [
      { name: 'heap: none (baseline)', how: 'none', heap: true },
      ...[1, 2, 4, 8].map((keep) => ({ name: `heap: keep ${keep}`, how: 'literal', keep, heap: true })),
      { name: 'heap: keep 8, class instance', how: 'klass', heap: true },
      { name: 'heap: keep 8, new Error()', how: 'error', heap: true },
    ],
  };
  const asked = process.argv.slice(2);
  const callgrind = process.env.STACK_COST_CALLGRIND === '1';
  const child = (c, n, only = false) => {
    const flags = [...(c.flags ?? []), ...(c.heap ? ['--expose-gc'] : [])];
    const env = { ...process.env, STACK_CHILD: JSON.stringify(c), STACK_N: String(n), STACK_ONLY: only ? '1' : '' };
    if (!callgrind || c.heap) return Number(execFileSync(process.execPath, [...flags, self], { env, encoding: 'utf8' }));
    const out = `/tmp/stack-cost-callgrind.${process.pid}.out`;
    const err = execFileSync('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, ...flags, self], {
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    void err;
    const summary = execFileSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', out], { encoding: 'utf8', maxBuffer: 64 << 20 });
    let sum = 0;
    for (const line of summary.split('\n')) {
      if (/Builtin_ErrorCaptureStackTrace\(int|Builtin_ErrorConstructor\(int|util::GetCallSites\(/.test(line)) sum += Number(line.trim().split(' ')[0].replaceAll(',', ''));
    }
    return sum;
  };
  console.log(`node ${process.version}, ${callgrind ? 'instructions' : 'CPU ns'} per capture`);
  for (const g of asked.length > 0 ? asked : Object.keys(groups)) {
    const cases = groups[g];
    const heap = g === 'heap';
    const N = Number(process.env.STACK_COST_N) || (heap ? 100000 : callgrind ? 2000 : 50000);
    const runs = new Map(cases.map((c) => [c, []]));
    for (let k = 0; k < (callgrind || heap ? 1 : 3); k++) {
      for (const c of cases) {
        if (callgrind && !heap) runs.get(c).push(child(c, N, true) / (N + 3000));
        else runs.get(c).push(child(c, N));
      }
    }
    const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
    let base;
    console.log(`\n[${g}]`);
    for (const c of cases) {
      const a = runs.get(c);
      const m = med(a);
      if (c.how === 'none') base = m;
      const unit = heap ? 'B kept per capture' : callgrind ? 'instructions' : 'ns';
      const spread = a.length > 1 ? `  [${Math.min(...a).toFixed(0)}-${Math.max(...a).toFixed(0)}]` : '';
      const over = c.how === 'none' ? '' : `  (+${(m - base).toFixed(0)} over its baseline)`;
      console.log(`${c.name.padEnd(52)} ${m.toFixed(0).padStart(8)} ${unit}${spread}${over}`);
    }
  }
}
