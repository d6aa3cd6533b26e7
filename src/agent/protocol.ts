/**
 * The agent's wire protocol, shared by the agent (src/agent) and its client (diagnostics/transport).
 *
 * Requests and responses are newline-delimited JSON objects. A request is `{ id, op, ...params }`;
 * its answer is `{ id, ok: true, result }` or `{ id, ok: false, error: { code, message } }`, possibly
 * preceded by event lines `{ id, event, data }` (trace batches, progress). A binary answer (the heap
 * snapshot) starts with `{ id, binary: true }`, then frames of `u32 big-endian length + bytes`, ended
 * by a zero-length frame, then the usual answer line. Requests on one connection run one at a time.
 */
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

export interface ErrorBody {
  code: string;
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
  profiling?: { pprof: boolean; heapSampling: number | null; cpuContinuous: boolean };
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
