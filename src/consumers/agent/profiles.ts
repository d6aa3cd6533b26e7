import { open, type Post } from './inspect.js';
import { findSourceMap } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { unsafeDirReason } from './paths.js';
import { getTracker } from '../../core/tracker.js';
import { AsyncLocalStorage, createHook } from 'node:async_hooks';
import { setCpuLabeler, cpuLabeler } from '../cpu-labels.js';
import { normalizePath } from '../../core/routes.js';
import type { StreamState } from '../../core/stream-state.js';
import { eagerCpuRunning } from './eager-cpu.js';

/**
 * Light profiles for `diag`: V8's sampling heap profiler and a continuous CPU profiler. Each is served by
 * `@datadog/pprof` when that optional dependency is installed (its native calls stop the target for
 * milliseconds), else by an in-process `inspector.Session` (`HeapProfiler.startSampling`/`stopSampling`,
 * `Profiler`). Heap profiles are returned in the format `HeapProfiler.getSamplingProfile` answers and
 * Chrome DevTools loads (`.heapprofile`): `{ head: { callFrame, selfSize, id, children }, samples }`.
 */

const tracker = getTracker();

export interface CallFrame {
  functionName: string;
  scriptId: string;
  url: string;
  /** 0-based, as CDP: the line of the function that allocated. */
  lineNumber: number;
  columnNumber: number;
}
export interface SamplingNode {
  callFrame: CallFrame;
  selfSize: number;
  id: number;
  children: SamplingNode[];
}
export interface SamplingProfile {
  head: SamplingNode;
  samples: Array<{ size: number; nodeId: number; ordinal: number }>;
}

export interface HeapProfileResult {
  profile: SamplingProfile;
  /** Which profiler answered. */
  engine: 'pprof' | 'inspector';
  /** 'window': allocated during the window and live at its end; 'start': live and sampled since sampling began at start-up. */
  since: 'window' | 'start';
  intervalBytes: number;
  /** How long the calls that stop the event loop took, in ms (get + stop). */
  stallMs: number;
  /** Where streamscope's own code lives in this process: `diag analyze` looks past its frames to the app's. */
  libraryPaths: string[];
}

/** streamscope's own source and build directories (`<root>/src/`, `<root>/dist/`), as paths and file URLs. */
function ownPaths(): string[] {
  try {
    const stack = new Error().stack ?? '';
    const m = /(?:\(|at )((?:file:\/\/)?\/[^\s)]*)\/(?:src|dist)\/[^\s)]*:\d+:\d+\)?/.exec(stack);
    if (!m) return [];
    const root = (m[1] as string).replace(/^file:\/\//, '');
    return [`${root}/src/`, `${root}/dist/`, `file://${root}/src/`, `file://${root}/dist/`];
  } catch {
    return [];
  }
}
const OWN_PATHS = ownPaths();

export interface ProfilingState {
  /** The optional @datadog/pprof is installed and loads. */
  pprof: boolean;
  /** Always-on heap sampling interval (bytes), or null. */
  heapSampling: number | null;
  /** The continuous CPU profiler runs (started at agent start), so a CPU capture costs no code-logging walk. */
  cpuContinuous: boolean;
  /** The eager-logging CPU profiler (@sentry-internal/node-cpu-profiler) was created at agent start: neither does a CPU capture through it. */
  cpuEager: boolean;
}

/** Mean bytes between heap samples for window captures: 128 KiB (V8's default is 32 KiB; pprof's Go default 512 KiB). */
export const DEFAULT_HEAP_INTERVAL = 128 * 1024;
const STACK_DEPTH = 64;

// ---------------------------------------------------------------------------------------------------------
// @datadog/pprof, optional

interface DdAllocNode {
  name: string;
  scriptName: string;
  scriptId: number;
  lineNumber: number;
  columnNumber: number;
  allocations: Array<{ sizeBytes: number; count: number }>;
  children: DdAllocNode[];
}
interface DdPprof {
  heap: {
    start(interval: number, depth: number): void;
    stop(): void;
    v8Profile(): DdAllocNode;
    monitorOutOfMemory(extension: number | 'auto', maxCount: number, dumpOnStderr: boolean, exportCommand?: string[], callback?: (profile: unknown) => void, mode?: number): void;
    CallbackMode: { Async: number };
  };
  encodeSync(profile: unknown): Uint8Array;
  time: {
    start(o: object): void;
    stop(restart?: boolean, generateLabels?: (a: { context?: { context?: object } }) => Record<string, string>): unknown;
    isStarted(): boolean;
    setContext(c: object): void;
  };
}

let dd: DdPprof | null | undefined;

/**
 * Loads @datadog/pprof once; null when it is not installed or its native part does not load here. Loading it
 * takes 50-250 ms of the main thread (a native module and its JavaScript), so the agent does it when it starts
 * (preloadPprof), not in the middle of a capture.
 */
export async function loadPprof(): Promise<DdPprof | null> {
  if (dd !== undefined) return dd;
  if ((process.env.STREAMSCOPE_PPROF ?? '').toLowerCase() === 'off') return (dd = null);
  try {
    const name = '@datadog/pprof';
    const mod = (await import(name)) as { default?: DdPprof } & DdPprof;
    dd = (mod.heap ? mod : mod.default) ?? null;
  } catch {
    dd = null;
  }
  return dd;
}

/** Loads @datadog/pprof soon after start-up (off the caller's tick; the timer never keeps the process alive). */
export function preloadPprof(): void {
  if ((process.env.STREAMSCOPE_PPROF ?? '').toLowerCase() === 'off') return;
  setTimeout(() => void loadPprof(), 0).unref();
}

/** The V8 AllocationProfile tree (@datadog/pprof) in CDP's SamplingHeapProfile form. */
function fromAllocationTree(root: DdAllocNode): SamplingProfile {
  let nextId = 1;
  const samples: SamplingProfile['samples'] = [];
  const convert = (n: DdAllocNode): SamplingNode => {
    const id = nextId++;
    let selfSize = 0;
    for (const a of n.allocations) {
      selfSize += a.sizeBytes * a.count;
      // as the inspector's: one entry per sampled allocation size, its `size` the scaled bytes (size × V8's count)
      samples.push({ size: a.sizeBytes * a.count, nodeId: id, ordinal: samples.length + 1 });
    }
    return {
      callFrame: {
        functionName: n.name,
        scriptId: String(n.scriptId),
        url: n.scriptName,
        // V8's AllocationProfile lines and columns are 1-based; CDP's 0-based
        lineNumber: n.lineNumber > 0 ? n.lineNumber - 1 : -1,
        columnNumber: n.columnNumber > 0 ? n.columnNumber - 1 : -1,
      },
      selfSize,
      id,
      children: n.children.map(convert),
    };
  };
  return { head: convert(root), samples };
}

/**
 * Where the process runs with source maps (`--enable-source-maps`, tsx, ts-node), a frame's position in the
 * generated code is mapped back to the source (`demo.ts:76` rather than the transpiled line). `diag` cannot do
 * this afterwards: the maps live in the process.
 */
export function mapSources(p: SamplingProfile): void {
  if (!process.sourceMapsEnabled) return;
  const maps = new Map<string, ReturnType<typeof findSourceMap> | null>();
  const walk = (n: SamplingNode): void => {
    const f = n.callFrame;
    if (f.url !== '' && !f.url.startsWith('node:') && f.lineNumber >= 0) {
      let m = maps.get(f.url);
      if (m === undefined) {
        try {
          m = findSourceMap(f.url) ?? null;
        } catch {
          m = null;
        }
        maps.set(f.url, m);
      }
      if (m) {
        const e = m.findEntry(f.lineNumber, Math.max(0, f.columnNumber)) as { originalSource?: string; originalLine?: number; originalColumn?: number };
        if (typeof e.originalLine === 'number' && typeof e.originalSource === 'string') {
          f.url = e.originalSource;
          f.lineNumber = e.originalLine;
          f.columnNumber = e.originalColumn ?? 0;
        }
      }
    }
    for (const c of n.children) walk(c);
  };
  walk(p.head);
}

// ---------------------------------------------------------------------------------------------------------
// inspector session

const openSession = open;

// ---------------------------------------------------------------------------------------------------------
// always-on heap sampling (STREAMSCOPE_HEAP_SAMPLING / startAgent({ heapSampling }))

let continuousHeap: { engine: 'pprof' | 'inspector'; interval: number; post?: Post; session?: { disconnect(): void } } | null = null;
let cpuContinuous = false;
/** The continuous CPU profiler's restart timer and the route labeler's hook (stopProfilers undoes them). */
let cpuRestart: NodeJS.Timeout | null = null;
let labelHook: { disable(): unknown } | null = null;

export function profilingState(): ProfilingState {
  return { pprof: dd !== null && dd !== undefined, heapSampling: continuousHeap?.interval ?? null, cpuContinuous, cpuEager: eagerCpuRunning() };
}

/** Parses a heap sampling interval in bytes (1024 .. 64 MiB); null when absent or invalid. */
export function parseInterval(v: unknown): number | null {
  if (v === undefined || v === null || v === '' || v === false) return null;
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isInteger(n) || n < 1024 || n > 64 * 1024 * 1024) return null;
  return n;
}

/** Starts always-on heap sampling; never throws (a failure is counted and printed once). */
export async function startContinuousHeap(interval: number): Promise<void> {
  if (continuousHeap !== null) return;
  try {
    const p = await loadPprof();
    if (p !== null) {
      p.heap.start(interval, STACK_DEPTH);
      continuousHeap = { engine: 'pprof', interval };
      return;
    }
    const { post, session } = openSession();
    await post('HeapProfiler.enable');
    await post('HeapProfiler.startSampling', { samplingInterval: interval });
    continuousHeap = { engine: 'inspector', interval, post, session };
  } catch (err) {
    tracker.fault('agent', err);
    process.stderr.write(`streamscope: heap sampling did not start: ${(err as Error)?.message ?? String(err)}\n`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// out-of-memory hook (STREAMSCOPE_OOM_PROFILE / startAgent({ oomProfile }))

/** Heap sampling interval when the OOM hook starts the heap profiler itself: pprof's default, 512 KiB. */
export const OOM_INTERVAL = 512 * 1024;

/** Creates `dir` (0700) when missing and checks that it is a private directory of this user, never a link. */
function privateDir(dir: string, what: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const why = unsafeDirReason(dir);
  if (why !== null) throw new Error(`refusing the ${what}: ${why}`);
}

/** Writes a new file, mode 0600; never through an existing file or a link. */
function writePrivate(file: string, data: string | Uint8Array): void {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeFileSync(fd, data);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes a heap profile when the heap nears its limit (@datadog/pprof's `heap.monitorOutOfMemory`): V8 calls
 * back near the limit, @datadog/pprof raises the limit by one young generation ('auto') once so that the
 * process lives long enough, and the callback writes `<dir>/oom-<pid>-<time>/heap.heapprofile` (the V8 format
 * `diag analyze` and DevTools read) and `heap.pb.gz` (pprof). The directory is 0700, the files 0600. Needs the
 * heap sampling profiler running: started here (at `interval`, else 512 KiB) unless heap sampling already runs.
 * Returns whether the hook is set; never throws (one line on stderr says why not).
 */
export async function startOomProfile(dir: string, interval: number | null): Promise<boolean> {
  const target = path.resolve(dir);
  try {
    privateDir(target, 'OOM profile directory');
    const p = await loadPprof();
    if (p === null) {
      process.stderr.write('streamscope: STREAMSCOPE_OOM_PROFILE needs the optional dependency @datadog/pprof; no heap profile will be written at OOM\n');
      return false;
    }
    await startContinuousHeap(interval ?? OOM_INTERVAL);
    if (continuousHeap?.engine !== 'pprof') return false;
    p.heap.monitorOutOfMemory('auto', 1, false, undefined, (profile) => writeOomProfile(p, target, profile), p.heap.CallbackMode.Async);
    return true;
  } catch (err) {
    tracker.fault('agent', err);
    process.stderr.write(`streamscope: the OOM heap profile is off: ${(err as Error)?.message ?? String(err)}\n`);
    return false;
  }
}

function writeOomProfile(p: DdPprof, dir: string, pprofProfile: unknown): void {
  try {
    const sub = path.join(dir, `oom-${process.pid}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    fs.mkdirSync(sub, { mode: 0o700 }); // fails on anything already there, a link included
    const profile = fromAllocationTree(p.heap.v8Profile());
    mapSources(profile);
    writePrivate(path.join(sub, 'heap.heapprofile'), JSON.stringify({ ...profile, streamscope: { libraryPaths: OWN_PATHS, outOfMemory: true } }));
    writePrivate(path.join(sub, 'heap.pb.gz'), p.encodeSync(pprofProfile));
    process.stderr.write(`streamscope: the heap is near its limit; heap profile written to ${sub} (diag analyze ${sub})\n`);
  } catch (err) {
    tracker.fault('agent', err);
  }
}

/**
 * Starts @datadog/pprof's time profiler now, while the heap is small: starting a V8 CPU profiler walks the
 * heap to log the code that exists (about 1.5 ms per MB of used heap here), and a profiler that keeps
 * running pays that once. A `cpu` capture then only restarts it (milliseconds). Without @datadog/pprof it
 * is not started (an inspector profile cannot be cut into windows without stopping it).
 */
export async function startContinuousCpu(): Promise<boolean> {
  if (cpuContinuous) return true;
  try {
    const p = await loadPprof();
    if (p === null) {
      process.stderr.write('streamscope: STREAMSCOPE_CPU_PROFILER needs the optional dependency @datadog/pprof; CPU captures will use the inspector\n');
      return false;
    }
    if (!p.time.isStarted()) {
      p.time.start({ intervalMicros: CPU_INTERVAL_US, lineNumbers: false, withContexts: true });
      installLabeler(p);
    }
    cpuContinuous = true;
    // the running profile is discarded every RESTART_MS so that it cannot grow without bound, and so that the
    // discard at a window's start stays short: @datadog/pprof serializes what it discards, and with contexts (the
    // route labels) every sample carries one (measured, loaded machine: 36-46 ms after 15 s, 4.5 ms without)
    const t = (cpuRestart = setInterval(() => {
      if (!cpuBusy) {
        try {
          p.time.stop(true, routeLabels);
        } catch (err) {
          tracker.fault('agent', err);
        }
      }
    }, RESTART_MS));
    t.unref();
    return true;
  } catch (err) {
    tracker.fault('agent', err);
    return false;
  }
}

/**
 * shutdown(): the always-on profilers stop (continuous CPU with its restart timer and route labels, heap
 * sampling). The out-of-memory hook of @datadog/pprof has no off switch and stays set.
 */
export async function stopProfilers(): Promise<void> {
  if (cpuRestart !== null) {
    clearInterval(cpuRestart);
    cpuRestart = null;
  }
  if (labelHook !== null) {
    labelHook.disable();
    labelHook = null;
    setCpuLabeler(undefined);
  }
  if (cpuContinuous && dd) {
    cpuContinuous = false;
    try {
      dd.time.stop(false);
    } catch (err) {
      tracker.fault('agent', err);
    }
  }
  const c = continuousHeap;
  continuousHeap = null;
  if (c === null) return;
  try {
    if (c.engine === 'pprof') dd?.heap.stop();
    else {
      await (c.post as Post)('HeapProfiler.stopSampling');
      c.session?.disconnect();
    }
  } catch (err) {
    tracker.fault('agent', err);
  }
}

const CPU_INTERVAL_US = 1000;
const RESTART_MS = 10_000;
let cpuBusy = false;

/**
 * What a CPU sample remembers of the stream whose code ran: the stream, weakly (the profiler keeps its samples'
 * contexts until the next window), and the route it would have if it is gone by then. A stream's route is
 * resolved when it is promoted (its first write, often after the handler started), so the label is read from the
 * stream when the profile is taken.
 */
interface RouteContext {
  ref: WeakRef<StreamState>;
  fallback: string;
}
const contexts = new WeakMap<StreamState, RouteContext>();
const NO_ROUTE = {};

function contextOf(s: StreamState): RouteContext {
  let c = contexts.get(s);
  if (c === undefined) {
    const r = s.config.route;
    c = { ref: new WeakRef(s), fallback: s.route !== '' ? s.route : typeof r === 'string' ? r : normalizePath(s.req?.url) };
    contexts.set(s, c);
  }
  return c;
}

/** A sample's labels: `route` when it ran a stream's code. */
export function routeLabels(a: { context?: { context?: object } }): Record<string, string> {
  const c = a.context?.context as Partial<RouteContext> | undefined;
  if (c === undefined || c.ref === undefined) return {};
  const s = c.ref.deref();
  return { route: s !== undefined && s.route !== '' ? s.route : (c.fallback ?? '') };
}

/**
 * Labels CPU samples with the stream whose code runs. @datadog/pprof (without `useCPED`, which Node 20 lacks
 * and which offers no `enterWith` for observeAll's dispatch) samples one process-wide context: it is set when a
 * handler starts and put back when it returns, and an AsyncLocalStorage carries the stream to what the handler
 * schedules, whose callbacks set it again (an async_hooks `before` hook, which costs each callback a store
 * lookup while the profiler runs). The native call is made only when the context changes.
 */
function installLabeler(p: DdPprof): void {
  if (cpuLabeler() !== undefined) return;
  const als = new AsyncLocalStorage<RouteContext>();
  let current: object = NO_ROUTE;
  const set = (c: object): void => {
    if (c === current) return;
    current = c;
    p.time.setContext(c);
  };
  labelHook = createHook({
    before() {
      try {
        set(als.getStore() ?? NO_ROUTE);
      } catch (err) {
        tracker.fault('agent', err);
      }
    },
  }).enable();
  setCpuLabeler({
    run<T>(s: StreamState, fn: (...args: unknown[]) => T, thisArg: unknown, args: ArrayLike<unknown>): T {
      let c: RouteContext;
      const prev = current;
      try {
        c = contextOf(s);
        set(c);
      } catch (err) {
        tracker.fault('agent', err);
        return fn.apply(thisArg, args as unknown[]);
      }
      try {
        return als.run(c, () => fn.apply(thisArg, args as unknown[]));
      } finally {
        try {
          set(prev);
        } catch (err) {
          tracker.fault('agent', err);
        }
      }
    },
    enter(s: StreamState): void {
      try {
        const c = contextOf(s);
        als.enterWith(c);
        set(c);
      } catch (err) {
        tracker.fault('agent', err);
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------------------
// captures

/** A sampled heap profile over `seconds` (or the always-on profile at once). */
export async function heapProfile(seconds: number, intervalBytes: number | undefined, wait: (ms: number) => Promise<void>): Promise<HeapProfileResult> {
  const c = continuousHeap;
  if (c !== null) {
    const t0 = performance.now();
    let profile: SamplingProfile;
    if (c.engine === 'pprof') profile = fromAllocationTree((dd as DdPprof).heap.v8Profile());
    else profile = (await (c.post as Post)('HeapProfiler.getSamplingProfile')).profile as SamplingProfile;
    mapSources(profile);
    return { profile, engine: c.engine, since: 'start', intervalBytes: c.interval, stallMs: performance.now() - t0, libraryPaths: OWN_PATHS };
  }
  const interval = intervalBytes ?? DEFAULT_HEAP_INTERVAL;
  const p = await loadPprof();
  if (p !== null) {
    p.heap.start(interval, STACK_DEPTH);
    try {
      await wait(seconds * 1000);
      const t0 = performance.now();
      const profile = fromAllocationTree(p.heap.v8Profile());
      p.heap.stop();
      mapSources(profile);
      return { profile, engine: 'pprof', since: 'window', intervalBytes: interval, stallMs: performance.now() - t0, libraryPaths: OWN_PATHS };
    } catch (err) {
      try {
        p.heap.stop();
      } catch {
        /* not running */
      }
      throw err;
    }
  }
  const { session, post } = openSession();
  try {
    await post('HeapProfiler.enable');
    await post('HeapProfiler.startSampling', { samplingInterval: interval });
    await wait(seconds * 1000);
    const t0 = performance.now();
    // stopSampling answers the profile and stops: one call, not getSamplingProfile + stopSampling
    const { profile } = await post('HeapProfiler.stopSampling');
    mapSources(profile as SamplingProfile);
    return { profile: profile as SamplingProfile, engine: 'inspector', since: 'window', intervalBytes: interval, stallMs: performance.now() - t0, libraryPaths: OWN_PATHS };
  } finally {
    try {
      session.disconnect();
    } catch {
      /* gone */
    }
  }
}

/**
 * A CPU profile over `seconds` from the continuous profiler (@datadog/pprof's time profiler, restarted at the
 * window's start and end), as a V8 `.cpuprofile`; null when the continuous profiler does not run.
 */
export async function continuousCpuProfile(seconds: number, wait: (ms: number) => Promise<void>): Promise<{ profile: unknown; stallMs: number } | null> {
  if (!cpuContinuous || dd === null || dd === undefined || cpuBusy) return null;
  const p = dd;
  cpuBusy = true;
  try {
    let t0 = performance.now();
    p.time.stop(true, routeLabels); // discard what ran before the window
    let stall = performance.now() - t0;
    await wait(seconds * 1000);
    t0 = performance.now();
    const pprofProfile = p.time.stop(true, routeLabels) as PprofLike;
    stall = Math.max(stall, performance.now() - t0);
    return { profile: pprofToCpuProfile(pprofProfile, seconds), stallMs: stall };
  } finally {
    cpuBusy = false;
  }
}

interface PprofLike {
  sampleType: Array<{ type: number | bigint; unit: number | bigint }>;
  sample: Array<{ locationId: Array<number | bigint>; value: Array<number | bigint>; label?: Array<{ key: number | bigint; str?: number | bigint }> }>;
  location: Array<{ id: number | bigint; line: Array<{ functionId: number | bigint; line: number | bigint }> }>;
  function: Array<{ id: number | bigint; name: number | bigint; filename: number | bigint; startLine?: number | bigint }>;
  stringTable: { strings: string[] } | string[];
  timeNanos?: number | bigint;
  durationNanos?: number | bigint;
  period?: number | bigint;
}

/**
 * @datadog/pprof's time profile (pprof) as a V8 `.cpuprofile`, so that `diag analyze` and DevTools read it as
 * they read the inspector's: one node per distinct stack, one sample per pprof sample count, spread evenly.
 */
export function pprofToCpuProfile(p: PprofLike, seconds: number): unknown {
  const strings = Array.isArray(p.stringTable) ? p.stringTable : p.stringTable.strings;
  const str = (i: number | bigint): string => strings[Number(i)] ?? '';
  const fns = new Map<number, { name: string; file: string }>();
  for (const f of p.function) fns.set(Number(f.id), { name: str(f.name), file: str(f.filename) });
  const locs = new Map<number, { name: string; file: string; line: number }>();
  for (const l of p.location) {
    const ln = l.line[0];
    const f = ln ? fns.get(Number(ln.functionId)) : undefined;
    locs.set(Number(l.id), { name: f?.name ?? '(unknown)', file: f?.file ?? '', line: ln ? Number(ln.line) : 0 });
  }
  const types = p.sampleType.map((t) => str(t.type));
  const countIdx = Math.max(0, types.indexOf('sample'));
  type N = { id: number; callFrame: CallFrame; hitCount: number; children: number[]; kids: Map<string, N> };
  let nextId = 1;
  const mk = (name: string, url: string, line: number): N => ({
    id: nextId++,
    callFrame: { functionName: name, scriptId: '0', url, lineNumber: line > 0 ? line - 1 : -1, columnNumber: -1 },
    hitCount: 0,
    children: [],
    kids: new Map(),
  });
  const root = mk('(root)', '', 0);
  const all: N[] = [root];
  const samples: number[] = [];
  // the `route` label of each sample (src/consumers/cpu-labels.ts): sampleRoutes[i] is 1 + its index in routes, 0 for none
  const routes: string[] = [];
  const routeIdx = new Map<string, number>();
  const sampleRoutes: number[] = [];
  for (const s of p.sample) {
    let route = 0;
    for (const l of s.label ?? []) {
      if (str(l.key) !== 'route' || l.str === undefined) continue;
      const name = str(l.str);
      let i = routeIdx.get(name);
      if (i === undefined) {
        routes.push(name);
        i = routes.length;
        routeIdx.set(name, i);
      }
      route = i;
    }
    let n = root;
    // pprof stacks are leaf first
    for (let i = s.locationId.length - 1; i >= 0; i--) {
      const l = locs.get(Number(s.locationId[i])) ?? { name: '(unknown)', file: '', line: 0 };
      const key = `${l.name}\u0000${l.file}\u0000${l.line}`;
      let k = n.kids.get(key);
      if (!k) {
        k = mk(l.name, l.file, l.line);
        n.kids.set(key, k);
        n.children.push(k.id);
        all.push(k);
      }
      n = k;
    }
    const count = Number(s.value[countIdx] ?? 1);
    n.hitCount += count;
    for (let i = 0; i < count; i++) {
      samples.push(n.id);
      sampleRoutes.push(route);
    }
  }
  const startTime = 0;
  const endTime = Math.round(seconds * 1e6);
  const dt = samples.length > 0 ? Math.floor(endTime / samples.length) : 0;
  return {
    nodes: all.map(({ kids: _k, ...n }) => n),
    startTime,
    endTime,
    samples,
    timeDeltas: samples.map(() => dt),
    // not V8's: DevTools ignores it; diag reads it (CPU per route, the pprof `route` label)
    ...(routes.length > 0 ? { streamscope: { routes, sampleRoutes } } : {}),
  };
}
