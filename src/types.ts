import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Tracer } from '@opentelemetry/api';

/**
 * A Prometheus registry of the application's client: prom-client's `Registry` (14, 15) or `@prometheus-io/client`'s
 * (both optional peers), described by the parts streamscope uses, so that these types need neither installed.
 */
export interface MetricsRegistry {
  metrics(): Promise<string>;
  readonly contentType: string;
  registerMetric(metric: never): void;
  getSingleMetric(name: string): unknown;
}

/** How a stream ended. Every stream gets exactly one. */
export type Outcome = 'completed' | 'client_aborted' | 'error' | 'timeout';

export type FindingKind = 'stalled_write' | 'dangling_stream' | 'zombie_producer' | 'dangling_async' | 'buffered_stream' | 'guard_action';

export type Severity = 'warning' | 'error';

/** A leak-detector finding (see docs/detectors.md). */
export interface Finding {
  kind: FindingKind;
  severity: Severity;
  streamId: number;
  route: string;
  method: string;
  /** Age of the stream when the finding was raised. */
  ageMs: number;
  detail: string;
  /** Where the stream (or the leaked resource) was created, when known. */
  stack?: string;
  /** Epoch milliseconds. */
  at: number;
}

/** What `streams()` returns for each open stream, what the agent sends, what `diag top` shows. */
export interface StreamSnapshot {
  id: number;
  route: string;
  method: string;
  /** Epoch milliseconds. */
  startedAt: number;
  ageMs: number;
  /** Open → first body byte, or null before the first write. */
  firstWriteMs: number | null;
  bytes: number;
  writes: number;
  blockedWrites: number;
  /** How long the current blocked write has waited for `drain` (0 when not blocked). */
  blockedForMs: number;
  bufferedBytes: number;
  clientClosed: boolean;
  ended: boolean;
  writesAfterClose: number;
  /** Trace id of the stream's span, '' when tracing is off. */
  traceId: string;
  findings: FindingKind[];
}

export type RouteOption = string | ((req: IncomingMessage, res: ServerResponse) => string | undefined);

export interface InstrumentOptions {
  /** Route label. Default: the framework's route template, else a normalized path. */
  route?: RouteOption;
  /** A registry of prom-client or `@prometheus-io/client`; default: the global `register` of the application's client. */
  registry?: MetricsRegistry;
  /** Prepended to every metric name. */
  prefix?: string;
  /** A blocked write older than this is a `stalled_write` (default 5000). */
  stallAfterMs?: number;
  /** Client gone longer than this while the producer holds the stream is `dangling_stream` (default 10000). */
  danglingAfterMs?: number;
  /** Writes held above the socket (a compression middleware, a Transform without flush) longer than this are a `buffered_stream` (default 2000). */
  bufferedAfterMs?: number;
  /** Every gap between writes into `stream_write_gap_seconds` (default false: costs a clock read per write). */
  writeGaps?: boolean;
  /** Tie async resources created by a stream's handler to the stream (default false). */
  trackAsync?: boolean;
  /** Record where each stream was opened (default false). */
  captureStacks?: boolean;
  /** OpenTelemetry tracer; default the global tracer. */
  tracer?: Tracer;
  /** Distinct route label values kept before `__other__` (default 200). */
  maxRoutes?: number;
  /** Guard (docs/guards.md): cut a response whose queued bytes exceed this. Default off. */
  maxBufferedBytes?: number;
  /** Guard (docs/guards.md): 'destroy' cuts a stream found `stalled_write`. Default 'none'. */
  stalledAction?: 'none' | 'destroy';
  /** Guard (docs/guards.md): 'throw' makes a write after close throw StreamClosedError. Default 'none'. */
  zombieAction?: 'none' | 'throw';
  /** Guard (docs/guards.md): TCP keep-alive idle time (ms, >= 1000) on streaming sockets. Default off. */
  deadPeerMs?: number;
}
