/**
 * The agent's wire protocol, shared by the agent (src/consumers/agent) and its client (diagnostics/transport).
 *
 * Requests and responses are newline-delimited JSON objects. A request is `{ id, op, ...params }`;
 * its answer is `{ id, ok: true, result }` or `{ id, ok: false, error: { code, message } }`, possibly
 * preceded by event lines `{ id, event, data }` (trace batches, progress). A binary answer (the heap
 * snapshot) starts with `{ id, binary: true }`, then frames of `u32 big-endian length + bytes`, ended
 * by a zero-length frame, then the usual answer line. Requests on one connection run one at a time.
 *
 * This is the one module that `diag` (diagnostics/) and the agent (src/consumers/agent/) share: the wire types and
 * constants, where the sockets live, the package version the agent reports, and the code that computes the
 * `process` and `streams` answers in the target (run by the agent, and evaluated as source text through the
 * inspector). It imports only Node built-ins; test/protocol-imports.test.ts checks that diagnostics/ imports
 * nothing else from src/consumers/agent/.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The package version, reported by the agent's `hello` and by `diag --version`; test/agent.test.ts checks it matches package.json. */
export const VERSION = '0.1.0';
export const PROTOCOL_VERSION = 1;

export type Op = 'hello' | 'streams' | 'process' | 'heap' | 'trace' | 'cpu' | 'heapProfile';

export interface Request {
  id: number;
  op: Op;
  /** trace, cpu: how long to record (seconds). */
  seconds?: number;
  /** process: how long to sample the event-loop delay (ms). */
  sampleMs?: number;
  /** trace: trace-event categories. */
  categories?: string[];
  /** heapProfile: mean bytes between samples (V8's samplingInterval). */
  intervalBytes?: number;
}

/**
 * The codes of the agent's error answers (`{ id, ok: false, error: { code, message } }`); docs/errors.md
 * ("Agent protocol errors") is tested against this list. `diag` prints the message and exits 2.
 */
export const AGENT_ERROR_CODES = {
  EPROTO: 'a request line that is not JSON or has no numeric id',
  EINVAL: 'an unknown op, or a parameter out of range',
  EBUSY: 'another capture of the same kind is running in this process',
  EFAILED: 'the recording failed inside the process',
} as const;

export type AgentErrorCode = keyof typeof AGENT_ERROR_CODES;

export interface ErrorBody {
  code: AgentErrorCode;
  message: string;
}

export interface HelloResult {
  protocol: number;
  pid: number;
  nodeVersion: string;
  argv: string[];
  execArgv: string[];
  title: string;
  streamscopeVersion: string;
  openStreams: number;
  uptimeSec: number;
  /** Which light profilers the agent has (absent on older agents). */
  profiling?: { pprof: boolean; heapSampling: number | null; cpuContinuous: boolean; cpuEager?: boolean };
  /** Parent pid: a node:cluster (or PM2) worker's primary. Absent from agents before 0.1.1. */
  ppid?: number;
  /** `cluster.worker.id` in a node:cluster worker (PM2 cluster mode included), else null. */
  clusterWorkerId?: number | null;
}

export const DEFAULT_TRACE_CATEGORIES = [
  'node',
  'node.async_hooks',
  'node.perf',
  'node.perf.usertiming',
  'node.environment',
  'node.promises.rejections',
  'v8',
  // V8's interrupt checks while JavaScript runs: how the trace analyzer tells a handler's long run from idle time
  'v8.execute',
];

/** Longest trace or CPU profile the agent accepts, in seconds. */
export const MAX_RECORD_SECONDS = 600;

/**
 * Where agent sockets live: one per-user directory, mode 0700, one `<pid>.sock` (mode 0600) per process.
 * `STREAMSCOPE_AGENT_DIR` overrides it (both the agent and `diag` read it); otherwise
 * `$XDG_RUNTIME_DIR/streamscope` when set, else `<tmpdir>/streamscope-<uid>`.
 * Shared with the CLI (which bundles this file); it never loads the rest of the library.
 */
export function agentDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.STREAMSCOPE_AGENT_DIR) return path.resolve(env.STREAMSCOPE_AGENT_DIR);
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'streamscope');
  return path.join(os.tmpdir(), `streamscope-${uid()}`);
}

/** Every directory `diag` looks in: the agent may have been started with a different environment. */
export function candidateDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.STREAMSCOPE_AGENT_DIR) return [path.resolve(env.STREAMSCOPE_AGENT_DIR)];
  const dirs = [path.join(os.tmpdir(), `streamscope-${uid()}`), path.join('/tmp', `streamscope-${uid()}`)];
  if (env.XDG_RUNTIME_DIR) dirs.unshift(path.join(env.XDG_RUNTIME_DIR, 'streamscope'));
  return [...new Set(dirs)];
}

export function socketPath(dir: string, pid: number): string {
  return path.join(dir, `${pid}.sock`);
}

export function uid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : -1;
}

/**
 * Returns why `dir` must not be used (another owner, group/world access, a symlink), or null when it is
 * a private directory of this user. Never follows a symlink.
 */
export function unsafeDirReason(dir: string): string | null {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (err) {
    return `cannot read ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  if (st.isSymbolicLink()) return `${dir} is a symbolic link`;
  if (!st.isDirectory()) return `${dir} is not a directory`;
  const me = uid();
  if (me >= 0 && st.uid !== me) return `${dir} belongs to uid ${st.uid}, not ${me}`;
  if ((st.mode & 0o077) !== 0) return `${dir} has mode ${(st.mode & 0o777).toString(8)}, expected 700`;
  return null;
}

/**
 * Removes the sockets of processes that are gone from a private agent directory: `<pid>.sock` files that
 * are sockets of this user (never following a link) whose pid no longer exists (`kill(pid, 0)` gives
 * ESRCH). A process killed by a signal cannot remove its own, and the agent adds no signal handler (that
 * would change how the app exits): so the next agent to start, and `diag ls`, clean up. Never throws.
 */
export function removeStaleSockets(dir: string): number {
  let removed = 0;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return 0;
  }
  const me = uid();
  for (const name of names) {
    const m = /^(\d+)\.sock$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pid < 1) continue;
    const file = path.join(dir, name);
    try {
      const st = fs.lstatSync(file);
      if (!st.isSocket() || (me >= 0 && st.uid !== me)) continue;
      try {
        process.kill(pid, 0);
        continue; // alive (or another user's: EPERM)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') continue;
      }
      fs.unlinkSync(file);
      removed++;
    } catch {
      /* raced with its owner or another cleaner */
    }
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------------------
// The `process` and `streams` answers, computed in the target.
//
// The agent calls these functions; `diag --via inspector` evaluates their source text (`fn.toString()`) in the
// target through `Runtime.evaluate`. So each `target*` function is SELF-CONTAINED: it uses only its parameters
// and globals (`process`, `globalThis`, `JSON`, `Math`, `Promise`, timers) — no imports, no module-level names,
// nothing a bundler could rename or hoist out of it. test/agent-inspector-parity.test.ts takes both answers from
// one process, through the built package and CLI, and compares them field by field.
// ---------------------------------------------------------------------------------------------------------

export interface CgroupMemory {
  /** Bytes, or null when unlimited. */
  limit: number | null;
  usage: number | null;
  source: string;
}

export interface ProcessFacts {
  pid: number;
  nodeVersion: string;
  platform: string;
  argv: string[];
  execArgv: string[];
  uptimeSec: number;
  memoryUsage: NodeJS.MemoryUsage;
  resourceUsage: NodeJS.ResourceUsage;
  activeResources: Record<string, number>;
  heapStatistics: import('node:v8').HeapInfo;
  heapSpaces: import('node:v8').HeapSpaceInfo[];
  eventLoopDelay: { sampleMs: number; minMs: number; maxMs: number; meanMs: number; stddevMs: number; p50Ms: number; p99Ms: number };
  eventLoopUtilization: { sinceStart: number; sample: number };
  cgroupMemory: CgroupMemory | null;
  hostMemAvailable: number | null;
}

/** The built-in modules the target functions use, passed in (the inspector has no `import`). */
export interface TargetModules {
  fs: Pick<typeof import('node:fs'), 'readFileSync'>;
  v8: Pick<typeof import('node:v8'), 'getHeapStatistics' | 'getHeapSpaceStatistics'>;
  perf_hooks: Pick<typeof import('node:perf_hooks'), 'monitorEventLoopDelay' | 'performance'>;
}

/** Reads a process's cgroup memory limit and usage (v2, then v1); null when not readable. Self-contained. */
export function targetCgroupMemory(fsm: TargetModules['fs'], pid: number | 'self'): CgroupMemory | null {
  const read = (file: string): string | null => {
    try {
      return String(fsm.readFileSync(file, 'utf8')).trim();
    } catch {
      return null;
    }
  };
  const num = (s: string | null): number | null => {
    if (s === null) return null;
    const n = Number(s);
    return Number.isFinite(n) ? n : null;
  };
  const cgroup = read(`/proc/${pid}/cgroup`);
  if (cgroup === null) return null;
  for (const line of cgroup.split('\n')) {
    const [, controllers, rel] = line.split(':');
    if (rel === undefined) continue;
    if (controllers === '') {
      const base = `/sys/fs/cgroup${rel === '/' ? '' : rel}`;
      const max = read(`${base}/memory.max`);
      if (max === null) continue;
      return { limit: max === 'max' ? null : Number(max), usage: num(read(`${base}/memory.current`)), source: base };
    }
    if (controllers !== undefined && controllers.split(',').includes('memory')) {
      const base = `/sys/fs/cgroup/memory${rel === '/' ? '' : rel}`;
      const max = num(read(`${base}/memory.limit_in_bytes`));
      if (max === null) continue;
      // v1 reports "unlimited" as a huge page-aligned number
      return { limit: max >= 2 ** 60 ? null : max, usage: num(read(`${base}/memory.usage_in_bytes`)), source: base };
    }
  }
  return null;
}

/** Host memory available (Linux `MemAvailable`), bytes; null when unknown. Self-contained. */
export function targetHostMemAvailable(fsm: TargetModules['fs']): number | null {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(String(fsm.readFileSync('/proc/meminfo', 'utf8')));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Process facts, with the event-loop delay and utilization sampled over `sampleMs` (the histogram is on only
 * while asked, so the agent costs nothing between captures). The timer is unref'd. Self-contained: the two
 * readers above are passed in.
 */
export function targetProcessFacts(
  m: TargetModules,
  sampleMs: number,
  cgroupMemory: typeof targetCgroupMemory,
  hostMemAvailable: typeof targetHostMemAvailable,
): Promise<ProcessFacts> {
  const h = m.perf_hooks.monitorEventLoopDelay({ resolution: 10 });
  const elu0 = m.perf_hooks.performance.eventLoopUtilization();
  h.enable();
  const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      try {
        h.disable();
        const elu = m.perf_hooks.performance.eventLoopUtilization(elu0);
        const active: Record<string, number> = {};
        if (typeof process.getActiveResourcesInfo === 'function') for (const k of process.getActiveResourcesInfo()) active[k] = (active[k] ?? 0) + 1;
        const n = h.count > 0;
        resolve({
          pid: process.pid,
          nodeVersion: process.version,
          platform: process.platform,
          argv: process.argv,
          execArgv: process.execArgv,
          uptimeSec: Math.round(process.uptime()),
          memoryUsage: process.memoryUsage(),
          resourceUsage: process.resourceUsage(),
          activeResources: active,
          heapStatistics: m.v8.getHeapStatistics(),
          heapSpaces: m.v8.getHeapSpaceStatistics(),
          eventLoopDelay: {
            sampleMs,
            minMs: n ? ms(h.min) : 0,
            maxMs: n ? ms(h.max) : 0,
            meanMs: n ? ms(h.mean) : 0,
            stddevMs: n ? ms(h.stddev) : 0,
            p50Ms: n ? ms(h.percentile(50)) : 0,
            p99Ms: n ? ms(h.percentile(99)) : 0,
          },
          eventLoopUtilization: { sinceStart: m.perf_hooks.performance.eventLoopUtilization().utilization, sample: elu.utilization },
          cgroupMemory: cgroupMemory(m.fs, 'self'),
          hostMemAvailable: hostMemAvailable(m.fs),
        });
      } catch (err) {
        reject(err);
      }
    }, sampleMs);
    if (typeof t.unref === 'function') t.unref();
  });
}

export interface StreamsAnswer {
  pid: number;
  time: string;
  streams: unknown[];
  findings: unknown[];
  internalErrors: Record<string, number>;
}

/**
 * The `streams` answer from the process's tracker (`globalThis[Symbol.for('streamscope.tracker')]`, shared by
 * every copy of the package); null when streamscope is not loaded. Self-contained.
 */
export function targetStreams(): StreamsAnswer | null {
  const t = (globalThis as unknown as Record<symbol, unknown>)[Symbol.for('streamscope.tracker')] as
    | { streams?: () => unknown[]; recentFindings?: () => unknown[]; internalErrors?: unknown }
    | undefined;
  if (t === undefined || t === null || typeof t.streams !== 'function') return null;
  return {
    pid: process.pid,
    time: new Date().toISOString(),
    streams: t.streams(),
    findings: typeof t.recentFindings === 'function' ? t.recentFindings() : [],
    internalErrors: t.internalErrors instanceof Map ? Object.fromEntries(t.internalErrors as Map<string, number>) : {},
  };
}

/** Clamps a requested event-loop sampling window (ms): default 1000, at most 10 s. */
export function sampleWindow(sampleMs: unknown): number {
  return typeof sampleMs === 'number' && sampleMs >= 0 ? Math.min(Math.round(sampleMs), 10_000) : 1000;
}

/** This process's cgroup memory (or another's, by pid, as diag reads it from /proc). */
export function cgroupMemory(pid: number | 'self' = 'self'): CgroupMemory | null {
  return targetCgroupMemory(fs, pid);
}

export function hostMemAvailable(): number | null {
  return targetHostMemAvailable(fs);
}

/**
 * What `diag --via inspector` evaluates for `process`: the same `targetProcessFacts` as the agent, as source
 * text. Resolves (never rejects) with a JSON string: the facts, or `{ error }`. `require` is bound only while
 * the expression runs synchronously, so the built-ins are fetched first.
 */
export function processFactsExpression(sampleMs: number): string {
  return `(() => {
  const fail = (e) => { try { return JSON.stringify({ error: String(e && e.message) }); } catch { return '{"error":"unknown"}'; } };
  try {
    const gb = (n) => (typeof process.getBuiltinModule === 'function' ? process.getBuiltinModule(n) : require(n));
    const m = { fs: gb('fs'), v8: gb('v8'), perf_hooks: gb('perf_hooks') };
    return (${targetProcessFacts.toString()})(m, ${sampleWindow(sampleMs)}, ${targetCgroupMemory.toString()}, ${targetHostMemAvailable.toString()})
      .then((v) => JSON.stringify(v), fail);
  } catch (e) {
    return fail(e);
  }
})()`;
}

/** What `diag --via inspector` evaluates for `streams`: `targetStreams` as source text; a JSON string with `loaded`. */
export function streamsExpression(): string {
  return `(() => {
  try {
    const v = (${targetStreams.toString()})();
    return JSON.stringify(v === null ? { loaded: false } : { loaded: true, ...v });
  } catch (e) {
    try { return JSON.stringify({ loaded: true, error: String(e && e.message) }); } catch { return '{"loaded":true,"error":"unknown"}'; }
  }
})()`;
}
