/**
 * Where a long task ran: the CPU profile taken over the same window as the trace (`diag capture --trace` takes
 * `cpu.cpuprofile` alongside) is sampled on the same clock as the trace events (both V8/libuv monotonic
 * microseconds), so the samples inside a long task's span name the functions that ran in it.
 */
import type { CpuFrame, TraceFinding } from '../report/types.js';

interface ProfileNode {
  id: number;
  callFrame?: { functionName?: string; url?: string; lineNumber?: number; columnNumber?: number };
  children?: number[];
}

/** Not code of the program: V8's pseudo-frames. */
const PSEUDO = new Set(['(program)', '(idle)', '(root)', '(garbage collector)']);
/** Node's `inspector` module: its `Session.post` runs the command synchronously on the target's thread. */
const INSPECTOR_URL = 'node:inspector';

/**
 * Adds `where` (the functions that took most of the task's samples, by self time) to each long task that a
 * profile covers, and names the first in the detail. Returns how many tasks were attributed.
 */
export function attributeLongTasks(findings: TraceFinding[], profile: unknown, top = 3): number {
  const p = profile as { nodes?: unknown; startTime?: unknown; samples?: unknown; timeDeltas?: unknown };
  if (!p || !Array.isArray(p.nodes) || typeof p.startTime !== 'number' || !Array.isArray(p.samples) || !Array.isArray(p.timeDeltas)) return 0;
  const samples = p.samples as unknown[];
  const deltas = p.timeDeltas as unknown[];
  if (samples.length !== deltas.length || samples.length === 0) return 0;
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes as unknown[]) {
    if (typeof n === 'object' && n !== null && typeof (n as ProfileNode).id === 'number') byId.set((n as ProfileNode).id, n as ProfileNode);
  }
  // sample times: the start plus the running sum of the deltas; sample i lasts until sample i + 1
  const times = new Float64Array(samples.length);
  let t = p.startTime;
  for (let i = 0; i < samples.length; i++) {
    const d = deltas[i];
    t += typeof d === 'number' && Number.isFinite(d) ? d : 0;
    times[i] = t;
  }
  let attributed = 0;
  for (const f of findings) {
    if (f.kind !== 'long_task' || f.startUs === undefined || f.endUs === undefined) continue;
    const self = new Map<string, CpuFrame & { us: number }>();
    let covered = 0;
    for (let i = lowerBound(times, f.startUs); i < samples.length && times[i] < f.endUs; i++) {
      const until = Math.min(i + 1 < samples.length ? times[i + 1] : times[i], f.endUs);
      const us = Math.max(0, until - times[i]);
      covered += us;
      const node = byId.get(samples[i] as number);
      const cf = node?.callFrame;
      const name = cf?.functionName || '(anonymous)';
      if (!cf || PSEUDO.has(name)) continue;
      const url = cf.url ?? '';
      const line = (cf.lineNumber ?? -1) + 1;
      const column = (cf.columnNumber ?? -1) + 1;
      const key = `${name}\u0000${url}\u0000${line}\u0000${column}`;
      const e = self.get(key) ?? { functionName: name, url, line, column, selfMs: 0, us: 0 };
      e.us += us;
      self.set(key, e);
    }
    if (covered === 0 || self.size === 0) continue;
    const where = [...self.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map(({ us, ...fr }) => ({ ...fr, selfMs: Math.round(us / 100) / 10 }));
    f.where = where;
    const w = where[0];
    f.detail += `; it ran ${w.functionName}${w.url ? ` ${w.url}${w.line > 0 ? `:${w.line}:${w.column}` : ''}` : ''} (${w.selfMs} ms of samples)`;
    if (w.url === INSPECTOR_URL && w.functionName === 'post') {
      // An inspector command run synchronously in the target: what `diag capture` itself sends (Profiler.start
      // walks the heap to log the code, and the profiler is not sampling yet: a 50-100 ms stall on Node 24 when
      // the trace is already running). The capture's own pause, not the app's code: reported as info.
      f.severity = 'info';
      f.detail += ': a synchronous inspector command (the capture starting or stopping a profiler), not the app';
    }
    attributed++;
  }
  return attributed;
}

function lowerBound(a: Float64Array, v: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
