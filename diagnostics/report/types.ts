/**
 * The analysis report: what `diag analyze --json` prints, what `report.json` holds, and what the text and
 * HTML renderers draw. Public format (see docs/diag.md, "Analyzing a capture"): add fields, never rename.
 */
import type { Finding, StreamSnapshot } from '../../src/types.js';
import type { HeapProfileSummary } from '../profile/heapprofile.js';

export const REPORT_VERSION = 1;

export type Severity = 'warning' | 'error';

export type HeapFindingKind = 'retained_response' | 'retained_socket' | 'retained_request' | 'queued_write_buffer';

/** Objects of one kind that share one shortest retainer path. */
export interface HeapFinding {
  kind: HeapFindingKind;
  severity: Severity;
  /** Objects in this group. */
  count: number;
  /** Sum of their retained sizes (bytes; dominator tree). */
  retainedSize: number;
  /** From a GC root to the object: nodes and edges alternating, `[node, edge, node, …, node]`. */
  path: string[];
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

export interface CpuSummary {
  file: string;
  durationMs: number;
  samples: number;
  top: Array<{ functionName: string; url: string; line: number; selfMs: number; selfPercent: number }>;
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
