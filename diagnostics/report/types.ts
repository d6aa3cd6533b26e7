/**
 * The analysis report: what `diag analyze --json` prints, what `report.json` holds, and what the text and
 * HTML renderers draw. Public format (see docs/diag.md, "Analyzing a capture"): add fields, never rename.
 */
import type { Finding, StreamSnapshot } from '../../src/types.js';
import type { HeapProfileSummary } from '../profile/heapprofile.js';

export const REPORT_VERSION = 1;

/** `info`: worth knowing, never a failure (`--fail-on` ignores it). */
export type Severity = 'info' | 'warning' | 'error';

export type HeapFindingKind = 'retained_response' | 'retained_socket' | 'retained_request' | 'queued_write_buffer';

/**
 * Objects of one kind held at one place in the program (the nearest closure of the program's code, or the nearest
 * collection, on their shortest retainer paths), whatever else their paths go through.
 */
export interface HeapFinding {
  kind: HeapFindingKind;
  severity: Severity;
  /** Objects in this group. */
  count: number;
  /** Sum of their retained sizes (bytes; dominator tree). */
  retainedSize: number;
  /**
   * How the object is held, as a reader thinks of it: objects and edges alternating, `[holder, edge, …, object]`,
   * from what holds it for the program (an active timer, a module's variable, else a GC root); a closure is
   * one step with its `file:line:column` and variables; a Map/Set is one step (`(entry)`).
   */
  path: string[];
  /** The shortest retainer path from a GC root as V8 records it, nodes and edges alternating. */
  rawPath: string[];
  /**
   * Where the program holds them: the closure step of `path` (`name() file:line:column {variables}`), or a
   * collection with what holds it (`module scope … → cache → Map`); absent when the path has neither.
   */
  holder?: string;
  /**
   * The other shortest paths by which objects of this group are held (`path` is the one most of them share):
   * the same holder reached another way, e.g. an interval's closure through the timer list and through an array
   * that keeps its Timeout. Up to 20, most objects first; absent when all share one path.
   */
  alsoVia?: Array<{ count: number; path: string[]; rawPath: string[] }>;
  /** With `alsoVia`: how many of the objects `path` leads to (the rest go through the other paths). */
  countOnPath?: number;
  /** queued_write_buffer: bytes queued on these responses. */
  queuedBytes?: number;
  /** Heap snapshot ids of up to 5 of the objects (to find them in DevTools). */
  ids: number[];
  detail: string;
}

export interface TraceFinding {
  kind: 'long_task' | 'gc_pause' | 'undestroyed_async';
  severity: Severity;
  count: number;
  detail: string;
  /** Longest duration in this group (ms), for long tasks and GC pauses. */
  maxMs?: number;
  totalMs?: number;
  /** long_task: where the longest one ran, from a CPU profile taken over the same window (cpu.cpuprofile). */
  where?: CpuFrame[];
  /** long_task: trace clock (µs) of the longest one; internal, for attribution. */
  startUs?: number;
  endUs?: number;
}

/** A stream finding from the detectors (streams.json), as is, with `source`. */
export type StreamFinding = Finding & { source: 'streams' };
export type ReportFinding = StreamFinding | (HeapFinding & { source: 'heap' }) | (TraceFinding & { source: 'trace' });

export interface ConstructorStat {
  name: string;
  count: number;
  selfSize: number;
  retainedSize: number;
}

export interface HeapSummary {
  file: string;
  fileSize: number;
  nodes: number;
  edges: number;
  /** Bytes reachable from the GC roots (the root's retained size). */
  totalSize: number;
  responses: { total: number; closed: number };
  requests: { total: number; closed: number };
  sockets: { total: number; closed: number };
  queuedBytes: number;
  byConstructor: ConstructorStat[];
}

export interface TraceSummary {
  file: string;
  events: number;
  durationMs: number;
  longTasks: { count: number; totalMs: number; maxMs: number; thresholdMs: number; spans?: Array<{ startMs: number; ms: number; label: string }> };
  gc: { count: number; totalMs: number; maxMs: number };
  async: { created: number; destroyed: number; alive: number; byType: Record<string, number> };
  top: Array<{ name: string; count: number; totalMs: number; maxMs: number }>;
}

/** A function that ran, with its share of a time window. */
export interface CpuFrame {
  functionName: string;
  url: string;
  /** 1-based line and column of the function's start. */
  line: number;
  column: number;
  selfMs: number;
}

export interface CpuSummary {
  file: string;
  durationMs: number;
  samples: number;
  top: Array<{ functionName: string; url: string; line: number; selfMs: number; selfPercent: number }>;
  /** CPU per stream route (the agent's continuous profiler labels its samples), largest first. */
  routes?: Array<{ route: string; selfMs: number; selfPercent: number }>;
}

export interface RouteStat {
  route: string;
  streams: number;
  maxAgeMs: number;
  bufferedBytes: number;
}

export interface Report {
  version: number;
  findings: ReportFinding[];
  summary: {
    /** Open streams in streams.json (0 without one). */
    streams: number;
    /** ServerResponse objects in the heap snapshot, else streams that are responses in streams.json. */
    responses: number;
    heap?: HeapSummary;
    trace?: TraceSummary;
    cpu?: CpuSummary;
    /** A sampled heap profile (heap.heapprofile): live bytes by allocation site; with --base, the sites that grew. */
    heapProfile?: HeapProfileSummary;
    routes?: RouteStat[];
  };
  /** Where the report came from. */
  source: { target: string; manifest?: Record<string, unknown> };
  /** Files of a capture directory that could not be analyzed (why), when any. */
  incomplete?: string[];
  /** Open streams (streams.json), for the report renderers. */
  streams?: StreamSnapshot[];
  /** The profiles themselves, for the HTML report's flame graphs (not in the JSON report). */
  profiles?: { cpu?: unknown; heap?: unknown };
}
