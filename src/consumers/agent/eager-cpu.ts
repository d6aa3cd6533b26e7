import { createRequire } from 'node:module';
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { getTracker } from '../../core/tracker.js';

/**
 * The eager-logging CPU profiler (optional dependency `@sentry-internal/node-cpu-profiler`, the native part of
 * `@sentry/profiling-node`, used here without the Sentry SDK). Its native module creates V8's CPU profiler with
 * `CpuProfiler::New(isolate, kDebugNaming, kEagerLogging)` when it loads: V8 then walks the heap once to log the
 * code that exists, and from then on logs each new compilation, so that a profile starts and stops in well
 * under a millisecond whatever the heap's size. Without it, a profile's start walks the whole heap (the
 * inspector's `Profiler.start`: about 1.5 ms per MB of used heap). The agent therefore loads it when it starts,
 * while the heap is small, and only then (never later than `EAGER_MAX_HEAP_MB` of used heap).
 *
 * What it gives: samples at 99 Hz (fixed in the binding), each a stack of V8 profile nodes (function name,
 * script, the column where the function starts and, the binding running V8 in caller-line mode, the line
 * *in the caller* at which it was called), with times. `toCpuProfile` turns that into the `.cpuprofile` the
 * rest of `diag` reads; the line where each function starts is looked up in its script (see `resolveLines`).
 */

const tracker = getTracker();

/** A frame as the binding reports it (`lineno`: the call site in the caller; `colno`: the function's start, 1-based). */
export interface EagerFrame {
  function: string;
  abs_path?: string;
  filename?: string;
  lineno: number;
  colno: number;
}
export interface EagerRawProfile {
  samples: Array<{ stack_id: number; elapsed_since_start_ns: string | number }>;
  /** Frame indices, innermost first, up to 128 deep (the outermost frames of a deeper stack are cut). */
  stacks: number[][];
  frames: EagerFrame[];
  profiler_logging_mode?: 'eager' | 'lazy';
}
interface Bindings {
  startProfiling(name: string): void;
  /** format 0: "thread" (sample times in ns since the profile's start). */
  stopProfiling(name: string, format: 0): EagerRawProfile | null;
}

/** Above this much used heap when the agent starts, the profiler is not created: its one walk would stall longer than 50 ms. */
export const EAGER_MAX_HEAP_MB = 32;

let bindings: Bindings | null = null;
let busy = false;
let seq = 0;

export function eagerCpuRunning(): boolean {
  return bindings !== null;
}

/** streamscope's own location, where the optional dependency is installed beside it. */
function ownBase(): string {
  // CJS build: __filename; ESM build: import.meta.url (tsup leaves it empty in CJS, where it is not read).
  return typeof __filename === 'string' ? __filename : import.meta.url;
}

/**
 * Loads the eager profiler now (synchronously: the heap walk it costs is paid at this moment, so it must be
 * while the heap is small). Returns why it is not there, or null when it runs. Never throws.
 * `explicit`: the app asked for it (option or environment), so a reason not to is worth a line on stderr.
 */
export function startEagerCpu(explicit: boolean): string | null {
  if (bindings !== null) return null;
  let why: string | null = null;
  try {
    const usedMb = process.memoryUsage().heapUsed / 2 ** 20;
    if ((process.env.SENTRY_PROFILER_LOGGING_MODE ?? '').toLowerCase() === 'lazy') {
      why = 'SENTRY_PROFILER_LOGGING_MODE=lazy makes it walk the heap at every start';
    } else if (usedMb > EAGER_MAX_HEAP_MB) {
      why = `${Math.round(usedMb)} MB of used heap: creating it now would stall the process for about ${Math.round(usedMb * 1.5)} ms (start the agent earlier, e.g. --import streamscope/register)`;
    } else {
      const mod = createRequire(ownBase())('@sentry-internal/node-cpu-profiler') as { CpuProfilerBindings?: Bindings };
      const b = mod.CpuProfilerBindings;
      if (b === undefined || typeof b.startProfiling !== 'function' || typeof b.stopProfiling !== 'function') why = 'its module has no CpuProfilerBindings';
      else bindings = b;
    }
  } catch (err) {
    // not installed (the usual case), or no binary for this platform and Node
    const message = String((err as Error)?.message ?? err).split('\n')[0];
    const missing = (err as NodeJS.ErrnoException)?.code === 'MODULE_NOT_FOUND' && message.includes("'@sentry-internal/node-cpu-profiler'");
    why = missing ? 'the optional dependency @sentry-internal/node-cpu-profiler is not installed' : `it did not load: ${message}`;
  }
  if (why !== null && explicit) process.stderr.write(`streamscope: the eager CPU profiler is off (${why}); CPU captures will use the inspector\n`);
  return why;
}

export interface EagerCpuResult {
  profile: CpuProfile;
  /** How long the start and stop calls took together, in ms. */
  stallMs: number;
}

/** A CPU profile over `seconds` from the eager profiler; null when it is not loaded or already recording. */
export async function eagerCpuProfile(seconds: number, wait: (ms: number) => Promise<void>): Promise<EagerCpuResult | null> {
  const b = bindings;
  if (b === null || busy) return null;
  busy = true;
  const name = `streamscope-cpu-${++seq}`;
  try {
    // the profile's start on the trace's clock (CLOCK_MONOTONIC, as V8's and libuv's), so that `diag` can place the
    // samples inside a trace's long tasks (a CPU profile taken alongside `--trace`)
    const startUs = Number(process.hrtime.bigint() / 1000n);
    let t0 = performance.now();
    b.startProfiling(name);
    const started = performance.now();
    let stall = started - t0;
    let raw: EagerRawProfile | null;
    try {
      await wait(seconds * 1000);
    } finally {
      t0 = performance.now();
      raw = b.stopProfiling(name, 0);
      stall += performance.now() - t0;
    }
    if (raw === null) throw new Error('the eager CPU profiler returned no profile');
    const lines = await resolveLines(raw);
    return { profile: toCpuProfile(raw, startUs, (t0 - started) * 1000, lines), stallMs: stall };
  } finally {
    busy = false;
  }
}

export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; scriptId: string; url: string; lineNumber: number; columnNumber: number }; hitCount: number; children: number[] }>;
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A script's name as the inspector gives it: CommonJS paths as file URLs; `node:` and URLs as they are. */
export function scriptUrl(f: EagerFrame): string {
  const s = f.abs_path ?? f.filename ?? '';
  return s.startsWith('/') ? pathToFileURL(s).href : s;
}

const isRoot = (f: EagerFrame | undefined): boolean => f !== undefined && f.function === '(root)' && (f.abs_path ?? f.filename ?? '') === '';

/**
 * The binding's profile as a V8 `.cpuprofile`: one node per V8 profile node (the binding's frames are those
 * nodes, so the tree is V8's), samples in order with their real time deltas. `lines[i]` is frame i's start
 * line (1-based; 0 when unknown). `startUs`: the profile's start in monotonic µs; `durationUs`: the window's length.
 */
export function toCpuProfile(p: EagerRawProfile, startUs: number, durationUs: number, lines: number[]): CpuProfile {
  const parent = new Map<number, number>(); // frame -> parent frame (-1: the root)
  let rootFrame = -1;
  for (const st of p.stacks) {
    if (!Array.isArray(st)) continue;
    for (let i = 0; i < st.length; i++) {
      const f = st[i] as number;
      if (isRoot(p.frames[f])) {
        rootFrame = f;
        continue;
      }
      if (!parent.has(f)) {
        const up = st[i + 1];
        // a stack cut at 128 frames: its outermost frame hangs from the root
        parent.set(f, up === undefined || isRoot(p.frames[up]) ? -1 : up);
      }
    }
  }
  const nodeOf = new Map<number, number>(); // frame -> node id
  nodeOf.set(rootFrame, 1);
  const nodes: CpuProfile['nodes'] = [{ id: 1, callFrame: { functionName: '(root)', scriptId: '0', url: '', lineNumber: -1, columnNumber: -1 }, hitCount: 0, children: [] }];
  for (const f of parent.keys()) {
    const fr = p.frames[f] as EagerFrame;
    nodeOf.set(f, nodes.length + 1);
    const line = lines[f] ?? 0;
    nodes.push({
      id: nodes.length + 1,
      callFrame: {
        functionName: fr.function ?? '',
        scriptId: '0',
        url: scriptUrl(fr),
        lineNumber: line > 0 ? line - 1 : -1,
        columnNumber: fr.colno > 0 ? fr.colno - 1 : -1,
      },
      hitCount: 0,
      children: [],
    });
  }
  for (const [f, up] of parent) {
    const id = nodeOf.get(f) as number;
    const pid = up === -1 ? 1 : (nodeOf.get(up) ?? 1);
    nodes[pid - 1]?.children.push(id);
  }
  const samples: number[] = [];
  const timeDeltas: number[] = [];
  let last = 0;
  for (const s of p.samples) {
    const st = p.stacks[s.stack_id];
    const leaf = st?.[0];
    const id = leaf === undefined ? 1 : (nodeOf.get(leaf) ?? 1);
    const t = Math.round(Number(s.elapsed_since_start_ns) / 1000);
    samples.push(id);
    timeDeltas.push(Math.max(0, t - last));
    last = Math.max(last, t);
    (nodes[id - 1] as CpuProfile['nodes'][number]).hitCount++;
  }
  return { nodes, startTime: startUs, endTime: startUs + Math.max(Math.round(durationUs), last), samples, timeDeltas };
}

const MAX_SCRIPT_BYTES = 8 * 1024 * 1024;

/**
 * The line where each frame's function starts (1-based; 0 when not found). The binding gives the column where
 * a function starts but, V8 running in caller-line mode, not its line; it is found in the script on disk: a
 * line whose character at that column can start a function (`(`, or an arrow's parameter) with the function's
 * name before it on that line (an anonymous function: `function` before it or `=>` after it). Where several
 * lines qualify, the call sites of the function's callees (lines inside it) pick the last one above them; a
 * frame without callees and several candidates (or anonymous) gets none. A script not on disk (`node:`
 * built-ins, `eval`) or whose file differs from what runs (a transpiler's output) may get none or, rarely, a
 * wrong line; the function's name and file are always right. Runs after the profile stopped, one script per
 * turn of the event loop, each in a few native string searches (scripts up to 8 MB).
 */
export async function resolveLines(p: EagerRawProfile): Promise<number[]> {
  const lines: number[] = new Array<number>(p.frames.length).fill(0);
  // the lowest call site inside each frame: the lineno of any frame called from it
  const lowestCall = new Map<number, number>();
  for (const st of p.stacks) {
    if (!Array.isArray(st)) continue;
    for (let i = 0; i + 1 < st.length; i++) {
      const callee = p.frames[st[i] as number];
      const caller = st[i + 1] as number;
      if (callee !== undefined && callee.lineno > 0) lowestCall.set(caller, Math.min(lowestCall.get(caller) ?? Infinity, callee.lineno));
    }
  }
  const byFile = new Map<string, number[]>();
  p.frames.forEach((f, i) => {
    const file = fileOf(f);
    if (file === null || f.colno <= 0) return;
    const list = byFile.get(file);
    if (list === undefined) byFile.set(file, [i]);
    else list.push(i);
  });
  for (const [file, frames] of byFile) {
    let text: string;
    try {
      const st = await fs.promises.stat(file);
      if (!st.isFile() || st.size > MAX_SCRIPT_BYTES) continue;
      text = await fs.promises.readFile(file, 'utf8');
    } catch {
      continue;
    }
    try {
      const src = new Script(text);
      for (const i of frames) lines[i] = startLine(src, p.frames[i] as EagerFrame, lowestCall.get(i));
    } catch (err) {
      tracker.fault('agent', err);
    }
    await new Promise<void>((r) => setImmediate(r));
  }
  return lines;
}

function fileOf(f: EagerFrame): string | null {
  const s = f.abs_path ?? f.filename ?? '';
  if (s.startsWith('/')) return s;
  if (s.startsWith('file://')) {
    try {
      return new URL(s).pathname.split('/').map(decodeURIComponent).join('/');
    } catch {
      return null;
    }
  }
  return null;
}

/** A script's text with the offset of each line's start (0-based lines). */
class Script {
  readonly starts: number[] = [0];
  constructor(readonly text: string) {
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) this.starts.push(i + 1);
  }
  line(l: number): string {
    const end = this.starts[l + 1];
    return this.text.slice(this.starts[l], end === undefined ? undefined : end - 1);
  }
  lineAt(offset: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.starts[mid] as number) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

const IDENT = /[\p{ID_Continue}$]/u;
/** Lines looked at above a callee's call site for an anonymous function's start. */
const MAX_BACK_LINES = 5000;
/** Occurrences of a name looked at. */
const MAX_OCCURRENCES = 10000;

/** The function's start line (1-based) in the script, 0 when not found or ambiguous. */
function startLine(src: Script, f: EagerFrame, below: number | undefined): number {
  const col = f.colno - 1;
  // V8's debug name: "Class.method", "obj.prop", "get x": the last word is what the source has
  const short = (f.function ?? '').split(/[.\s]/).filter(Boolean).pop() ?? '';
  const named = short !== '' && short !== '(anonymous)';
  // a script's own top level (CommonJS wrapper, ES module body) is anonymous and starts at 1:1
  if (!named && col === 0) return 1;
  const opens = (line: string): boolean => {
    const c = line[col];
    if (c === undefined || (c !== '(' && !IDENT.test(c))) return false;
    // not the middle of a word
    return c === '(' || col === 0 || !IDENT.test(line[col - 1] as string);
  };
  const hasBelow = below !== undefined && Number.isFinite(below);
  if (!named) {
    if (!hasBelow) return 0;
    for (let l = Math.min(below as number, src.starts.length) - 1, n = 0; l >= 0 && n < MAX_BACK_LINES; l--, n++) {
      const line = src.line(l);
      if (opens(line) && (line.slice(0, col).includes('function') || line.slice(col).includes('=>'))) return l + 1;
    }
    return 0;
  }
  const candidates: number[] = [];
  let last = -1;
  for (let o = src.text.indexOf(short), n = 0; o !== -1 && n < MAX_OCCURRENCES; o = src.text.indexOf(short, o + 1), n++) {
    const l = src.lineAt(o);
    if (l === last || o - (src.starts[l] as number) + short.length > col + 1) continue;
    last = l;
    if (opens(src.line(l))) candidates.push(l + 1);
  }
  if (hasBelow) {
    let best = 0;
    for (const l of candidates) if (l <= (below as number)) best = l;
    return best;
  }
  return candidates.length === 1 ? (candidates[0] as number) : 0;
}
