import type { StreamState } from '../core/stream-state.js';
import { kCpuLabeler as kLabeler } from '../core/symbols.js';

/**
 * CPU per route: while the continuous CPU profiler runs (the agent's `STREAMSCOPE_CPU_PROFILER=on`, with the
 * optional @datadog/pprof), the agent installs a labeler here and the places where streamscope runs a stream's
 * code (a handler through `inStream`, observeAll's dispatch through `enterInStream`) mark it with the stream,
 * so that each CPU sample carries the stream's route. Nothing is installed otherwise: the check is one load.
 * The slot is on `globalThis`, so an agent of one copy of the package (ESM or CJS) labels streams of another.
 */
export interface CpuLabeler {
  /** Runs `fn` (and what it schedules) labeled with the stream. */
  run<T>(s: StreamState, fn: (...args: unknown[]) => T, thisArg: unknown, args: ArrayLike<unknown>): T;
  /** The rest of this synchronous dispatch, and what it schedules, is labeled with the stream. */
  enter(s: StreamState): void;
}

const g = globalThis as unknown as Record<symbol, CpuLabeler | undefined>;

export function cpuLabeler(): CpuLabeler | undefined {
  return g[kLabeler];
}

export function setCpuLabeler(l: CpuLabeler | undefined): void {
  g[kLabeler] = l;
}
