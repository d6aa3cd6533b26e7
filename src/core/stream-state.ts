import { performance } from 'node:perf_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, Tracer } from '@opentelemetry/api';
import type { FindingKind, Outcome, RouteOption } from '../types.js';
import type { H2StreamLike } from './http2.js';
import { userFrames, type StackHolder } from './stacks.js';
import { kStreamIds } from './symbols.js';

/**
 * A consumer's hooks on the write path (the guards, src/consumers/guards.ts, install them through their resolved
 * config): called only on a write that met backpressure, or on a write after close with `zombieThrow`.
 */
export interface WriteGuard {
  /** A write after close throws (zombieAction 'throw'). */
  readonly zombieThrow: boolean;
  /** A write returned false; `queued` is the response's writableLength. */
  blockedWrite(s: StreamState, queued: number): void;
  /** A write after close with `zombieThrow`: throws. */
  zombieWrite(s: StreamState): never;
}

/**
 * Resolved per-stream settings; one frozen object is shared by every stream of one instrument() call.
 * The core's settings only: consumers add their own (the metric set, the guards) to the object that
 * src/setup.ts resolves, and read them back themselves.
 */
export interface StreamConfig {
  readonly stallAfterMs: number;
  readonly danglingAfterMs: number;
  /** Writes held above the socket longer than this are a `buffered_stream` (docs/detectors.md). */
  readonly bufferedAfterMs?: number;
  /** Opt-in: every gap between writes into `stream_write_gap_seconds` (docs/metrics.md). */
  readonly writeGaps?: boolean;
  readonly trackAsync: boolean;
  readonly captureStacks: boolean;
  readonly tracer: Tracer | undefined;
  readonly route: RouteOption | undefined;
  /** Opt-in guards' write-path hooks (src/consumers/guards.ts); null (or absent) when every guard is off. */
  readonly guards?: WriteGuard | null;
}

/** `performance.timeOrigin` is a getter that calls into the runtime; it never changes. */
const TIME_ORIGIN = performance.timeOrigin;

/**
 * Stream ids are process-wide: every copy of the package (ESM and CJS, or two versions) draws from the
 * one counter on `globalThis`, so two streams never share an id.
 */
const ids: { next: number } = ((globalThis as unknown as Record<symbol, { next: number } | undefined>)[kStreamIds] ??= { next: 1 });

/**
 * A stream's lifecycle. Only the tracker's transition methods (src/core/tracker.ts) assign it:
 *
 *   Pending ──promote──▶ Open ──close──▶ Closed ──settle / handler settled / sweep──▶ Released
 *      └──discard──▶ Discarded                ▲                                          │
 *                                             └──────── a write after release ◀─────────┘
 *
 * - Pending: attached, not known to be a stream yet (a short response ends here and is Discarded).
 * - Open: a stream, in `tracker.open`.
 * - Closed: the response closed; in `tracker.lingering` while its producer still holds it.
 * - Released: forgotten by the tracker (request and response dropped).
 * - Discarded: not a stream (ended within the tick of its first write); nothing more is counted.
 *
 * Small integers in lifecycle order, so that "not closed yet" reads `phase < Phase.Closed`; the
 * per-write path compares them and nothing more.
 */
export const Phase = Object.freeze({ Discarded: -1, Pending: 0, Open: 1, Closed: 2, Released: 3 } as const);
export type Phase = (typeof Phase)[keyof typeof Phase];

/** How many consumer slots are taken (Tracker.slot): a stream's slot array is allocated at that size, no larger. */
export const slotCount = { n: 0 };

export const NO_FINDINGS: FindingKind[] = Object.freeze([]) as unknown as FindingKind[];

/**
 * Running totals that a stream's counts also go to: a consumer's per-route figures (the metrics point a stream's
 * `totals` at its route's at open, `Tracker.countInto`), so that a scrape reads its routes, never every stream.
 */
export class WriteTotals {
  writes = 0;
  bytes = 0;
  blocked = 0;
  afterClose = 0;
}

/** Where a stream's counts go until a consumer gives it its own totals (and for good when none does): read by nobody. */
export const NO_TOTALS = new WriteTotals();

/**
 * Everything the tracker knows about one response. Built once with every field initialised so its
 * shape is fixed; the per-write path only bumps numbers on it.
 */
export class StreamState {
  // The fields every write reads or bumps come first, so they share a cache line or two: a write runs
  // after a syscall has cooled the caches, and the rest of the state is read once per stream.
  /** Where the stream is in its lifecycle (see `Phase`); set only by the tracker's transitions. */
  phase: Phase = Phase.Pending;
  writes = 0;
  bytes = 0;
  /** What the counts (writes, bytes, blocked writes, writes after close) also go to: one pointer, no lookup. */
  totals: WriteTotals = NO_TOTALS;
  clientClosed = false;
  /** Original methods of the response, restored never (we only forward to them). */
  origWrite: ServerResponse['write'] | null = null;
  /** HTTP/2: the `ServerHttp2Stream` under the response, or the stream itself for `stream` events (src/core/http2.ts). */
  h2: H2StreamLike | null = null;
  config: StreamConfig;
  readonly id: number;
  /** performance.now() when the response was seen (request start). */
  readonly t0: number;
  /** Epoch ms of t0. */
  readonly startedAt: number;
  /** The request, until the stream's route is resolved (at promotion). */
  req: IncomingMessage | null;
  /**
   * The response: held strongly while the stream is open (the server's socket holds it anyway), weakly
   * once it closed while its producer still holds it (lingering), so the tracker never shows up as what
   * retains a closed response in a heap snapshot: its producer does, which is what to see.
   */
  private strongRes: ServerResponse | null;
  private weakRes: WeakRef<ServerResponse> | null = null;
  route = '';
  method: string;
  /**
   * Consumers' own per-stream data, by the slot index each took at load (`Tracker.slot()`); allocated
   * when a consumer first stores something (at open), so a short response never pays for it.
   */
  slots: unknown[] | null = null;

  /** Listeners (by their bit, Tracker) that said at open this stream is of no further interest to them. */
  muted = 0;
  /** Index in the tracker's open / lingering lists (-1: not in it). */
  openSlot = -1;
  lingerSlot = -1;
  promoteScheduled = false;
  firstWriteAt = -1;
  blockedWrites = 0;
  blockedSince = -1;
  drainListening = false;
  writesAfterClose = 0;
  /** When the last write after close came (performance.now(); -1: none yet). */
  lastWriteAt = -1;
  /** The longest wait (ms) the producer left between writes after close, the first counted from the close. */
  afterCloseGap = 0;
  ended = false;
  closedAt = -1;
  /** Set when the server side failed: handler threw, response errored, destroyed by the app. */
  errored = false;
  timedOut = false;
  serverDestroyed = false;
  /** instrument() knows when the handler's promise settles; observeAll does not (true there). */
  handlerSettled = true;
  outcome: Outcome | null = null;
  /** The tracker emitted `release` for it (once per stream, even when a later write brings it back to be watched). */
  released = false;

  /** The context active where the handler was tracked (track()): the parent of the stream's span. */
  parentContext: Context | undefined = undefined;
  traceId = '';
  /** Shared empty list until the first finding (no array per stream). */
  findings: FindingKind[] = NO_FINDINGS;
  /** Where the stream was opened (captureStacks), formatted only when reported. */
  stackHolder: StackHolder | undefined = undefined;
  origEnd: ServerResponse['end'] | null = null;
  origWriteHead: ServerResponse['writeHead'] | null = null;
  origDestroy: ServerResponse['destroy'] | null = null;

  constructor(req: IncomingMessage, res: ServerResponse, config: StreamConfig, t0: number) {
    this.id = ids.next++;
    this.t0 = t0;
    this.startedAt = TIME_ORIGIN + t0;
    this.req = req;
    this.strongRes = res;
    this.method = req.method ?? 'GET';
    this.config = config;
  }

  /** A consumer's data in its slot (undefined until it stored some). */
  slot<T>(i: number): T | undefined {
    const a = this.slots;
    return a === null ? undefined : (a[i] as T | undefined);
  }

  setSlot(i: number, v: unknown): void {
    const a = this.slots;
    if (a === null) {
      // exact size: an array grown by `b[i] = v` from empty reserves 17 entries
      const b: unknown[] = new Array(i < slotCount.n ? slotCount.n : i + 1);
      b[i] = v;
      this.slots = b;
    } else {
      a[i] = v;
    }
  }

  get res(): ServerResponse | null {
    return this.strongRes ?? this.weakRes?.deref() ?? null;
  }

  /** From now on the tracker holds the response weakly. */
  holdWeakly(): void {
    const res = this.strongRes;
    if (res !== null) this.weakRes = new WeakRef(res);
    this.strongRes = null;
    this.h2 = null; // the HTTP/2 stream too (for `stream` events it is the response)
  }

  /** Forgets the request and response. */
  drop(): void {
    this.strongRes = null;
    this.weakRes = null;
    this.req = null;
    this.h2 = null;
  }

  get stack(): string | undefined {
    return this.stackHolder === undefined ? undefined : userFrames(this.stackHolder);
  }

  hasFinding(kind: FindingKind): boolean {
    return this.findings.includes(kind);
  }
}
