import { performance } from 'node:perf_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ROOT_CONTEXT, type Context, type Tracer } from '@opentelemetry/api';
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

/** How many consumer slots are taken (Tracker.slot): a stream's array of slots past its inline ones is allocated at that size, no larger. */
export const slotCount = { n: 0 };

/** Consumer slots kept in fields of the stream (StreamState.slot); this package's own consumers take 7. */
const INLINE_SLOTS = 7;

export const NO_FINDINGS: FindingKind[] = Object.freeze([]) as unknown as FindingKind[];

/** Bits of `StreamState.flags` (one small integer instead of a field per boolean: 8 B each). */
const CLIENT_CLOSED = 1;
const PROMOTE_SCHEDULED = 2;
const DRAIN_LISTENING = 4;
const ENDED = 8;
const ERRORED = 16;
const TIMED_OUT = 32;
const SERVER_DESTROYED = 64;
/** Inverted (`handlerSettled` is true by default), so that a new stream's flags are 0. */
const HANDLER_RUNS = 128;
const RELEASED = 256;
/** `res` holds a WeakRef to the response (the stream lingers), not the response. */
const WEAK_RES = 512;
/** The outcome, in 3 bits from OUTCOME_SHIFT: 0 none yet, else its index in OUTCOMES + 1. */
const OUTCOME_SHIFT = 10;
const OUTCOME_MASK = 7 << OUTCOME_SHIFT;
const OUTCOMES: readonly Outcome[] = ['completed', 'client_aborted', 'error', 'timeout'];
/** `parentContext` is OpenTelemetry's ROOT_CONTEXT (what `context.active()` is with no context manager). */
const PARENT_ROOT = 1 << 13;
/** `req` is the response's own `res.req` (node:http's), so the stream does not keep a pointer of its own to it. */
const REQ_OF_RES = 1 << 14;
/** Written to since the tracker's last sweep (it is in `Tracker.written`): the sweep looks at the streams that wrote, not at every open one. */
const WRITTEN = 1 << 15;
/** `muted` in the bits from MUTED_SHIFT up to bit 30 (a Smi holds 31 bits and a sign). */
const MUTED_SHIFT = 16;
const LOW_MASK = (1 << MUTED_SHIFT) - 1;
/** How many listeners can be muted per stream (`Tracker` gives the later ones no bit: never muted). */
export const MUTABLE_LISTENERS = 31 - MUTED_SHIFT;

/**
 * The response's own methods that streamscope's replace on the instance, as they were: one frozen object shared by
 * every response whose methods are the same (nearly always node:http's own), so a stream pays one pointer for them.
 */
export class Originals {
  constructor(
    readonly write: ServerResponse['write'],
    readonly end: ServerResponse['end'],
    readonly writeHead: ServerResponse['writeHead'] | null,
    readonly destroy: ServerResponse['destroy'],
    readonly emit: ServerResponse['emit'],
  ) {}
}

let lastOriginals: Originals | null = null;

/** The shared `Originals` of these methods (a new one only when they differ from the last asked for). */
export function originals(
  write: ServerResponse['write'],
  end: ServerResponse['end'],
  writeHead: ServerResponse['writeHead'] | null,
  destroy: ServerResponse['destroy'],
  emit: ServerResponse['emit'],
): Originals {
  const o = lastOriginals;
  if (o !== null && o.write === write && o.end === end && o.writeHead === writeHead && o.destroy === destroy && o.emit === emit) return o;
  return (lastOriginals = Object.freeze(new Originals(write, end, writeHead, destroy, emit)));
}

/**
 * What most streams never have: backpressure, writes after close, a trace, a finding, a captured stack. Allocated
 * on the first change from its defaults (a stream that met none of these has none).
 */
class Cold {
  /** HTTP/2: the `ServerHttp2Stream` under the response, or the stream itself for `stream` events. */
  h2: H2StreamLike | null = null;
  /** The request when it is not `res.req` (an HTTP/2 `stream` event's, a framework's own), until promotion. */
  req: IncomingMessage | null = null;
  /** The span's parent when it is not ROOT_CONTEXT. */
  parentContext: Context | undefined = undefined;
  /** Consumer slots past the inline ones (see StreamState.slot). */
  moreSlots: unknown[] | null = null;
  blockedWrites = 0;
  blockedSince = -1;
  /** The stream's index in `Tracker.blocked` (-1: not in it; see BlockedStreams). */
  blockedSlot = -1;
  writesAfterClose = 0;
  lastWriteAt = -1;
  afterCloseGap = 0;
  traceId = '';
  findings: FindingKind[] = NO_FINDINGS;
  stackHolder: StackHolder | undefined = undefined;
}

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
 *
 * It lives as long as its stream (10,000 open streams: 10,000 of them), so it holds only what every stream needs
 * (each field is 8 B, each time a boxed double of 16 B more): the booleans are bits of one integer behind
 * accessors, the rarely used fields are in a `Cold` object allocated on their first change, the response's
 * original methods are one shared object, and the epoch start is computed from `t0`. Every name reads and writes
 * as a plain field did (accessors), so the rest of the code is unchanged by the layout.
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
  /** The booleans below, as bits (see their accessors). */
  private flags = 0;
  /** Original methods of the response (shared, see `Originals`), restored never (we only forward to them). */
  orig: Originals | null = null;
  config: StreamConfig;
  readonly id: number;
  /** performance.now() when the response was seen (request start). */
  readonly t0: number;
  /**
   * The response: held strongly while the stream is open (the server's socket holds it anyway), weakly
   * once it closed while its producer still holds it (lingering), so the tracker never shows up as what
   * retains a closed response in a heap snapshot: its producer does, which is what to see.
   */
  private resRef: ServerResponse | WeakRef<ServerResponse> | null;
  route = '';
  method: string;
  /**
   * Consumers' own per-stream data, by the slot index each took at load (`Tracker.slot()`): the first
   * INLINE_SLOTS in fields of the stream itself (an array would cost its header and length too, and be allocated
   * per stream), the rest in `moreSlots`, allocated when a consumer first stores something there.
   */
  private slot0: unknown = undefined;
  private slot1: unknown = undefined;
  private slot2: unknown = undefined;
  private slot3: unknown = undefined;
  private slot4: unknown = undefined;
  private slot5: unknown = undefined;
  private slot6: unknown = undefined;

  /**
   * Index in the tracker's open or lingering list (-1: in neither). One field for both: a stream is in one list at
   * most (it leaves `open` before it joins `lingering`), and each list checks that the item at the index is it.
   */
  listSlot = -1;
  /**
   * The first write, in whole microseconds after `t0` (-1: none yet): a small integer in the object, where a time
   * would be a boxed double (16 B more per stream). Read and written as `firstWriteAt` (performance.now()).
   */
  private firstWriteUs = -1;
  closedAt = -1;
  /** Rarely used fields (see `Cold`); null until one of them changes. */
  private cold: Cold | null = null;

  constructor(req: IncomingMessage, res: ServerResponse, config: StreamConfig, t0: number) {
    this.id = ids.next++;
    this.t0 = t0;
    this.resRef = res;
    this.req = req;
    this.method = req.method ?? 'GET';
    this.config = config;
  }

  /** Epoch ms of t0. */
  get startedAt(): number {
    return TIME_ORIGIN + this.t0;
  }

  /** performance.now() of the first write, to the microsecond (-1: none yet). */
  get firstWriteAt(): number {
    const us = this.firstWriteUs;
    return us < 0 ? -1 : this.t0 + us / 1000;
  }
  set firstWriteAt(v: number) {
    this.firstWriteUs = v < 0 ? -1 : Math.max(0, Math.round((v - this.t0) * 1000));
  }

  /** HTTP/2: the `ServerHttp2Stream` under the response, or the stream itself for `stream` events (src/core/http2.ts). */
  get h2(): H2StreamLike | null {
    return this.cold === null ? null : this.cold.h2;
  }
  set h2(v: H2StreamLike | null) {
    if (this.cold !== null || v !== null) this.c.h2 = v;
  }

  // ---- the booleans (bits of `flags`) ----

  private flag(bit: number, on: boolean): void {
    this.flags = on ? this.flags | bit : this.flags & ~bit;
  }

  get clientClosed(): boolean {
    return (this.flags & CLIENT_CLOSED) !== 0;
  }
  set clientClosed(v: boolean) {
    this.flag(CLIENT_CLOSED, v);
  }
  get promoteScheduled(): boolean {
    return (this.flags & PROMOTE_SCHEDULED) !== 0;
  }
  set promoteScheduled(v: boolean) {
    this.flag(PROMOTE_SCHEDULED, v);
  }
  get drainListening(): boolean {
    return (this.flags & DRAIN_LISTENING) !== 0;
  }
  set drainListening(v: boolean) {
    this.flag(DRAIN_LISTENING, v);
  }
  get ended(): boolean {
    return (this.flags & ENDED) !== 0;
  }
  set ended(v: boolean) {
    this.flag(ENDED, v);
  }
  /** Set when the server side failed: handler threw, response errored, destroyed by the app. */
  get errored(): boolean {
    return (this.flags & ERRORED) !== 0;
  }
  set errored(v: boolean) {
    this.flag(ERRORED, v);
  }
  get timedOut(): boolean {
    return (this.flags & TIMED_OUT) !== 0;
  }
  set timedOut(v: boolean) {
    this.flag(TIMED_OUT, v);
  }
  get serverDestroyed(): boolean {
    return (this.flags & SERVER_DESTROYED) !== 0;
  }
  set serverDestroyed(v: boolean) {
    this.flag(SERVER_DESTROYED, v);
  }
  /** instrument() knows when the handler's promise settles; observeAll does not (true there). */
  get handlerSettled(): boolean {
    return (this.flags & HANDLER_RUNS) === 0;
  }
  set handlerSettled(v: boolean) {
    this.flag(HANDLER_RUNS, !v);
  }
  /** Written to since the tracker's last sweep (the tracker sets and clears it: `Tracker.wrote`). */
  get written(): boolean {
    return (this.flags & WRITTEN) !== 0;
  }
  set written(v: boolean) {
    this.flag(WRITTEN, v);
  }
  /** The tracker emitted `release` for it (once per stream, even when a later write brings it back to be watched). */
  get released(): boolean {
    return (this.flags & RELEASED) !== 0;
  }
  set released(v: boolean) {
    this.flag(RELEASED, v);
  }

  /** How the stream ended (null until it closed). */
  get outcome(): Outcome | null {
    const i = (this.flags & OUTCOME_MASK) >> OUTCOME_SHIFT;
    return i === 0 ? null : (OUTCOMES[i - 1] as Outcome);
  }
  set outcome(v: Outcome | null) {
    const i = v === null ? 0 : OUTCOMES.indexOf(v) + 1;
    this.flags = (this.flags & ~OUTCOME_MASK) | (i << OUTCOME_SHIFT);
  }

  /** Listeners (by their bit, Tracker) that said at open this stream is of no further interest to them. */
  get muted(): number {
    return this.flags >>> MUTED_SHIFT;
  }
  set muted(v: number) {
    this.flags = (this.flags & LOW_MASK) | (v << MUTED_SHIFT);
  }

  /** The request, until the stream's route is resolved (at promotion). */
  get req(): IncomingMessage | null {
    if ((this.flags & REQ_OF_RES) !== 0) return ((this.resRef as { req?: IncomingMessage } | null)?.req ?? null);
    return this.cold === null ? null : this.cold.req;
  }
  set req(v: IncomingMessage | null) {
    const res = (this.flags & WEAK_RES) === 0 ? (this.resRef as { req?: unknown } | null) : null;
    if (v !== null && res !== null && res.req === v) {
      this.flags |= REQ_OF_RES;
      if (this.cold !== null) this.cold.req = null;
    } else {
      this.flags &= ~REQ_OF_RES;
      if (this.cold !== null || v !== null) this.c.req = v;
    }
  }

  /** The context active where the handler was tracked (track()): the parent of the stream's span. */
  get parentContext(): Context | undefined {
    if ((this.flags & PARENT_ROOT) !== 0) return ROOT_CONTEXT;
    return this.cold === null ? undefined : this.cold.parentContext;
  }
  set parentContext(v: Context | undefined) {
    if (v === ROOT_CONTEXT) {
      this.flags |= PARENT_ROOT;
      if (this.cold !== null) this.cold.parentContext = undefined;
    } else {
      this.flags &= ~PARENT_ROOT;
      if (this.cold !== null || v !== undefined) this.c.parentContext = v;
    }
  }

  // ---- the rarely used fields (in `Cold`) ----

  private get c(): Cold {
    return (this.cold ??= new Cold());
  }

  get blockedWrites(): number {
    return this.cold === null ? 0 : this.cold.blockedWrites;
  }
  set blockedWrites(v: number) {
    if (this.cold !== null || v !== 0) this.c.blockedWrites = v;
  }
  get blockedSince(): number {
    return this.cold === null ? -1 : this.cold.blockedSince;
  }
  set blockedSince(v: number) {
    if (this.cold !== null || v !== -1) this.c.blockedSince = v;
  }
  get blockedSlot(): number {
    return this.cold === null ? -1 : this.cold.blockedSlot;
  }
  set blockedSlot(v: number) {
    if (this.cold !== null || v !== -1) this.c.blockedSlot = v;
  }
  get writesAfterClose(): number {
    return this.cold === null ? 0 : this.cold.writesAfterClose;
  }
  set writesAfterClose(v: number) {
    if (this.cold !== null || v !== 0) this.c.writesAfterClose = v;
  }
  /** When the last write after close came (performance.now(); -1: none yet). */
  get lastWriteAt(): number {
    return this.cold === null ? -1 : this.cold.lastWriteAt;
  }
  set lastWriteAt(v: number) {
    if (this.cold !== null || v !== -1) this.c.lastWriteAt = v;
  }
  /** The longest wait (ms) the producer left between writes after close, the first counted from the close. */
  get afterCloseGap(): number {
    return this.cold === null ? 0 : this.cold.afterCloseGap;
  }
  set afterCloseGap(v: number) {
    if (this.cold !== null || v !== 0) this.c.afterCloseGap = v;
  }
  get traceId(): string {
    return this.cold === null ? '' : this.cold.traceId;
  }
  set traceId(v: string) {
    if (this.cold !== null || v !== '') this.c.traceId = v;
  }
  /** Shared empty list until the first finding (no array per stream). */
  get findings(): FindingKind[] {
    return this.cold === null ? NO_FINDINGS : this.cold.findings;
  }
  set findings(v: FindingKind[]) {
    if (this.cold !== null || v !== NO_FINDINGS) this.c.findings = v;
  }
  /** Where the stream was opened (captureStacks), formatted only when reported. */
  get stackHolder(): StackHolder | undefined {
    return this.cold === null ? undefined : this.cold.stackHolder;
  }
  set stackHolder(v: StackHolder | undefined) {
    if (this.cold !== null || v !== undefined) this.c.stackHolder = v;
  }

  /** A consumer's data in its slot (undefined until it stored some). */
  slot<T>(i: number): T | undefined {
    switch (i) {
      case 0:
        return this.slot0 as T | undefined;
      case 1:
        return this.slot1 as T | undefined;
      case 2:
        return this.slot2 as T | undefined;
      case 3:
        return this.slot3 as T | undefined;
      case 4:
        return this.slot4 as T | undefined;
      case 5:
        return this.slot5 as T | undefined;
      case 6:
        return this.slot6 as T | undefined;
      default: {
        const a = this.cold === null ? null : this.cold.moreSlots;
        return a === null ? undefined : (a[i - INLINE_SLOTS] as T | undefined);
      }
    }
  }

  setSlot(i: number, v: unknown): void {
    switch (i) {
      case 0:
        this.slot0 = v;
        return;
      case 1:
        this.slot1 = v;
        return;
      case 2:
        this.slot2 = v;
        return;
      case 3:
        this.slot3 = v;
        return;
      case 4:
        this.slot4 = v;
        return;
      case 5:
        this.slot5 = v;
        return;
      case 6:
        this.slot6 = v;
        return;
    }
    const a = this.cold === null ? null : this.cold.moreSlots;
    if (a === null) {
      if (v === undefined) return;
      // exact size: an array grown by `b[i] = v` from empty reserves 17 entries
      const b: unknown[] = new Array((i < slotCount.n ? slotCount.n : i + 1) - INLINE_SLOTS);
      b[i - INLINE_SLOTS] = v;
      this.c.moreSlots = b;
    } else {
      a[i - INLINE_SLOTS] = v;
    }
  }

  get res(): ServerResponse | null {
    const r = this.resRef;
    if (r === null) return null;
    return (this.flags & WEAK_RES) === 0 ? (r as ServerResponse) : ((r as WeakRef<ServerResponse>).deref() ?? null);
  }

  /** From now on the tracker holds the response weakly. */
  holdWeakly(): void {
    const r = this.resRef;
    if (r !== null && (this.flags & WEAK_RES) === 0) {
      this.resRef = new WeakRef(r as ServerResponse);
      this.flags |= WEAK_RES;
    }
    this.h2 = null; // the HTTP/2 stream too (for `stream` events it is the response)
  }

  /** Forgets the request and response. */
  drop(): void {
    this.req = null;
    this.resRef = null;
    this.flags &= ~WEAK_RES;
    this.h2 = null;
  }

  get stack(): string | undefined {
    const h = this.stackHolder;
    return h === undefined ? undefined : userFrames(h);
  }

  hasFinding(kind: FindingKind): boolean {
    return this.findings.includes(kind);
  }
}
