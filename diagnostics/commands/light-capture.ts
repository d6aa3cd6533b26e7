/**
 * The light captures' side of `diag capture`: what each capture kind is expected to cost the target (printed
 * before it runs), the pause budget for the full heap snapshot (`--max-pause`), and the pprof copies of the
 * profiles (`cpu.pb.gz`, `heap.pb.gz`).
 *
 * Measured here (docs/benchmarks.md, "Light captures"), on a target with about 200 MB of used heap:
 * - sampled heap profile: with @datadog/pprof in the agent, a few ms when the window ends; through the inspector,
 *   one full GC (V8's inspector asks for kSamplingForceGC), 0.1 to 1 s for 200 MB;
 * - trace: NodeTracing start/stop cost a few ms;
 * - CPU profile through the inspector: `Profiler.start` walks the heap to log the code that exists, about
 *   1.5 ms per MB of used heap; with the agent's continuous profiler (@datadog/pprof, STREAMSCOPE_CPU_PROFILER=on)
 *   only a restart (tens of ms).
 */
import fs from 'node:fs';
import { DiagError } from '../errors.js';
import { formatBytes } from '../progress.js';
import { cpuProfileToPprof, gzipProfile, heapProfileToPprof, type CpuProfile, type HeapProfile } from '../profile/pprof.js';
import type { CaptureDir } from '../transport/capture-dir.js';

/** Default `--max-pause`: a full snapshot whose estimated pause is longer is refused without --force. */
export const DEFAULT_MAX_PAUSE_S = 2;
/** Inspector `Profiler.start`: ms of stall per MiB of used heap (310 ms for 210 MB here, idle machine). */
const CPU_START_MS_PER_MB = 1.5;

type Profiling = { pprof: boolean; heapSampling: number | null; cpuContinuous: boolean; cpuEager?: boolean };

export function parseMaxPause(v: unknown): number {
  if (v === undefined) return DEFAULT_MAX_PAUSE_S;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 3600) throw new DiagError(`--max-pause must be a number of seconds in (0, 3600], got "${String(v)}"`);
  return n;
}

/**
 * Why a full snapshot is refused under the pause budget, or null. The estimate is the optimistic one (a quiet
 * machine's rate), so a refusal is never a false alarm about the pause.
 */
export function pauseRefusal(pid: number, used: number | null, bytesPerSecond: number, maxPause: number, force: boolean): string | null {
  if (force || used === null) return null;
  const est = used / bytesPerSecond;
  if (est <= maxPause) return null;
  return (
    `heap snapshot refused: it would stop pid ${pid} for at least ${est.toFixed(1)} s (${formatBytes(used)} of heap), over --max-pause ${maxPause} s; ` +
    `"diag capture ${pid} --heap-profile 30" answers what holds memory (sampled allocation sites, a pause under 50 ms); ` +
    `--max-pause ${Math.ceil(est * 3)} or --force takes the snapshot anyway`
  );
}

export function heapProfileNote(p: Profiling, seconds: number, via: 'agent' | 'inspector', used: number | null): string {
  if (via === 'agent' && p.heapSampling !== null) {
    return `heap profile: the agent samples since start-up (1 per ${formatBytes(p.heapSampling)}): answered at once; expect a pause under 50 ms`;
  }
  if (via === 'agent' && p.pprof) return `heap profile: sampling allocations for ${seconds} s (@datadog/pprof); expect a pause under 50 ms when the window ends`;
  // V8's inspector starts sampling with kSamplingForceGC: the profile is built after a full GC
  const heap = used !== null ? ` of ${formatBytes(used)} of heap` : '';
  return `heap profile: sampling allocations for ${seconds} s; expect a full GC${heap} when the window ends (V8's inspector forces one; 0.1-1 s for 200 MB here), under 50 ms with @datadog/pprof in the target`;
}

export const TRACE_PAUSE_NOTE = 'trace: expect pauses of a few ms when tracing starts and stops';

export function cpuPauseNote(p: Profiling, used: number | null, via: 'agent' | 'inspector'): string {
  if (via === 'agent' && p.cpuContinuous) return 'cpu profile: the continuous profiler runs (@datadog/pprof): expect a pause under 50 ms';
  if (via === 'agent' && p.cpuEager === true) {
    return 'cpu profile: the eager-logging profiler (@sentry-internal/node-cpu-profiler, 99 samples/s) keeps its code map current: expect a pause of a few ms';
  }
  const path = via === 'agent' ? "the inspector's Profiler.start in the agent" : "the inspector's Profiler.start";
  if (used === null) return `cpu profile: ${path}: V8 logs the existing code when profiling starts: expect a pause of about 1.5 ms per MB of used heap`;
  const ms = Math.max(1, Math.round((used / 2 ** 20) * CPU_START_MS_PER_MB));
  return `cpu profile: ${path}: V8 logs the existing code when profiling starts: expect a pause of about ${ms} ms (${formatBytes(used)} of heap)${
    ms > 50 ? '; the agent with @sentry-internal/node-cpu-profiler installed, or STREAMSCOPE_CPU_PROFILER=on with @datadog/pprof, avoids it' : ''
  }`;
}

/** Writes `cpu.pb.gz` or `heap.pb.gz` beside the V8 profile (0600, never through an existing file or link). */
export function writePprof(cap: CaptureDir, kind: 'cpu' | 'heap', profile: unknown, intervalBytes = 0): void {
  const buf = kind === 'cpu' ? gzipProfile(cpuProfileToPprof(profile as CpuProfile)) : gzipProfile(heapProfileToPprof(profile as HeapProfile, intervalBytes));
  const name = `${kind}.pb.gz`;
  const fd = fs.openSync(cap.file(name), 'wx', 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, buf);
  } finally {
    fs.closeSync(fd);
  }
  cap.added(name);
}
