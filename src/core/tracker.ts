import { performance } from 'node:perf_hooks';
import type { Finding, FindingKind, StreamSnapshot } from '../types.js';
import { MUTABLE_LISTENERS, NO_FINDINGS, Phase, slotCount, type StreamState, type WriteTotals } from './stream-state.js';
import { BlockedStreams, LingeringStreams, OpenStreams, type StreamList } from './stream-list.js';
import { kState, kTracker } from './symbols.js';
import * as outcome from './outcome.js';
import { atShutdown, isLive } from './switch.js';
import { debuglog } from 'node:util';

/** `NODE_DEBUG=streamscope` prints each swallowed fault on stderr. */
const debug = debuglog('streamscope');

/**
 * Lifecycle events of a stream. Metrics, tracing, detectors and the agent are all listeners;
 * nothing else reads a response. Every callback runs through a safe-execute: a throwing listener
 * is counted in `streamscope_internal_errors_total` and never reaches the app.
 */
export interface TrackerListener {
  /** Identifies the listener in `streamscope_internal_errors_total{component}`. */
  readonly component: string;
  /**
   * A stream opened. Returning `false` says the stream is of no further interest to this listener (tracing
   * with no tracer, a consumer with nothing set up): its later events (firstWrite … release, finding) are
   * not delivered to it, so that an idle consumer costs a short stream one call, not four.
   */
  open?(s: StreamState): void | false;
  firstWrite?(s: StreamState): void;
  /** A blocked episode starts: `write()` returned false while not already blocked. */
  writeBlocked?(s: StreamState): void;
  /** A blocked episode ends (`drain`, or close); waitedMs is how long it lasted. */
  drain?(s: StreamState, waitedMs: number): void;
  clientClosed?(s: StreamState): void;
  /**
   * The first write after the client went away, and each one after the stream's `release` (no later event carries
   * its tally then); other writes after close only bump `s.writesAfterClose`.
   */
  writeAfterClose?(s: StreamState): void;
  /** The response closed; `s.outcome` is set. */
  close?(s: StreamState): void;
  /** The tracker forgets the stream (closed, and the producer let go). Once per stream. */
  release?(s: StreamState): void;
  finding?(s: StreamState, f: Finding): void;
  /**
   * The sweep (every SWEEP_MS while any stream is open or lingering; the tracker owns its timer, so no
   * consumer has to keep it alive): after the listeners' sweeps, the tracker releases what its producer let go.
   */
  sweep?(now: number): void;
  /**
   * The sweep's walk over the lingering streams goes in slices, each in a turn of the event loop of its own (at
   * most LINGER_SLICE streams and about LINGER_SLICE_MS each): a slice begins, `first` when it runs in the sweep's
   * own tick (after the listeners' `sweep`), not from an immediate of its own.
   */
  lingerSlice?(now: number, first: boolean): void;
  /** A lingering stream's turn in the walk; the tracker then releases it if its producer let go. */
  lingering?(s: StreamState, now: number): void;
}

/** Runs code in a stream's async context, and knows what async work it created (trackAsync). */
export interface AsyncContext {
  run<T>(s: StreamState, fn: (...args: unknown[]) => T, thisArg: unknown, args: ArrayLike<unknown>): T;
  /**
   * False when `run` would only call `fn` (no trackAsync for this stream, no CPU labels): the handler is then
   * called directly, so that no frame of ours stands between it and the dispatch under it (a captured stack keeps
   * the user's frames, not ours). Absent in a context installed by an older copy of the package: `run` is used.
   */
  wants?(s: StreamState): boolean;
  enter(s: StreamState): void;
  /** Async resources the stream's user code created and that are still alive (they hold a closed stream). */
  live(s: StreamState): number;
}

const DEFAULT_RING = 1000;

/** How far back from its end `written` is searched for a released stream (see `Tracker.unwrite`). */
const WRITTEN_LOOKBACK = 64;

/** How often the sweep runs (detectors' checks, releases on the time window); a finding comes within its threshold plus this. */
export const SWEEP_MS = 250;
/**
 * Lingering streams one slice of the sweep's walk visits at most (the listeners' checks, then the release), and
 * the time it may take from its start (its findings raised within it included; the clock is read every 16 streams,
 * and a slice visits at least 64): 10,000 streams whose clients left together are walked in slices of a turn
 * each, the next turn going on where the last stopped, instead of in one turn (docs/detectors.md, "Bursts").
 */
export const LINGER_SLICE = 1000;
export const LINGER_SLICE_MS = 2;
const LINGER_SLICE_MIN = 64;

type EventName = Exclude<keyof TrackerListener, 'component' | 'sweep' | 'lingerSlice' | 'lingering'>;
type Hook = (this: TrackerListener, s: StreamState, arg?: unknown) => unknown;

/**
 * One event's handlers and their listeners, in registration order (parallel arrays), with each listener's bit in
 * `StreamState.muted` (0 for a listener past the MUTABLE_LISTENERS-th, 16th: never muted). `mutable`: -1 when any
 * of them has no bit (it is always called), else the bits of them all: a stream whose `muted` covers it has none
 * to call (a short stream's `release`, whose only handlers answered `false` at its open), and `emit` returns at once.
 */
interface EventHooks {
  readonly fns: Hook[];
  readonly owners: TrackerListener[];
  readonly bits: number[];
  readonly mutable: number;
}

/**
 * The listeners' handlers by event, read once when a listener is added or removed: `emit()` then loops over
 * exactly the handlers of its event. (Looking up `listener[event]` on every listener at every emit was a
 * megamorphic keyed load per listener — about 2 µs of a short stream's 4 emits with 6 consumers.) One field per
 * event, in a class so that every tracker's hooks share one shape, read by name (`hooksFor`): a lookup by the
 * event's name as a key (`hooks[event]`) was itself a megamorphic keyed load at every emit (about 90 instructions
 * each, 350 of a short stream's, Node 24; docs/benchmarks.md, "Instructions per stream").
 */
class Hooks {
  readonly open: EventHooks;
  readonly firstWrite: EventHooks;
  readonly writeBlocked: EventHooks;
  readonly drain: EventHooks;
  readonly clientClosed: EventHooks;
  readonly writeAfterClose: EventHooks;
  readonly close: EventHooks;
  readonly release: EventHooks;
  readonly finding: EventHooks;

  constructor(listeners: readonly TrackerListener[], bitOf: (l: TrackerListener) => number) {
    const of = (e: EventName): EventHooks => {
      const fns: Hook[] = [];
      const owners: TrackerListener[] = [];
      const bits: number[] = [];
      let mutable = 0;
      for (const l of listeners) {
        const fn = l[e] as Hook | undefined;
        if (typeof fn === 'function') {
          const bit = bitOf(l);
          fns.push(fn);
          owners.push(l);
          bits.push(bit);
          mutable = bit === 0 || mutable === -1 ? -1 : mutable | bit;
        }
      }
      return { fns, owners, bits, mutable };
    };
    this.open = of('open');
    this.firstWrite = of('firstWrite');
    this.writeBlocked = of('writeBlocked');
    this.drain = of('drain');
    this.clientClosed = of('clientClosed');
    this.writeAfterClose = of('writeAfterClose');
    this.close = of('close');
    this.release = of('release');
    this.finding = of('finding');
  }
}

/**
 * The handlers of `event`, read by name: each branch is a named load of one shape, where `hooks[event]` would be
 * a keyed load by nine names. The events a short stream emits come first.
 */
function hooksFor(h: Hooks, event: EventName): EventHooks {
  switch (event) {
    case 'open':
      return h.open;
    case 'firstWrite':
      return h.firstWrite;
    case 'close':
      return h.close;
    case 'release':
      return h.release;
    case 'clientClosed':
      return h.clientClosed;
    case 'writeBlocked':
      return h.writeBlocked;
    case 'drain':
      return h.drain;
    case 'writeAfterClose':
      return h.writeAfterClose;
    case 'finding':
      return h.finding;
  }
}

export class Tracker {
  /** Streams whose response has not closed. */
  readonly open: StreamList = new OpenStreams();
  /** Closed streams whose producer still holds them (handler unsettled, writes still arriving). */
  readonly lingering: StreamList = new LingeringStreams();
  /**
   * Open streams in a blocked episode (from `writeBlocked` to `drain` or close): what the sweep's stall checks and
   * the `stream_stalled` / `stream_buffered_bytes` fold visit, instead of every open stream.
   */
  readonly blocked: StreamList = new BlockedStreams();
  /**
   * The streams written to since the last sweep (`wrote()`, from the write path: once per stream per sweep), in
   * `written[0 .. writtenCount)`; the sweep's listeners read them, then the sweep clears them. A stream that did
   * not write since the last sweep has nothing there for a look at its writes (src/consumers/detectors/gaps.ts).
   */
  readonly written: (StreamState | undefined)[] = [];
  writtenCount = 0;
  /** The consumers, in registration order; their handlers are read when they are added (see `Hooks`). */
  readonly listeners: TrackerListener[] = [];
  /** A listener's bit in `StreamState.muted`, for its life in this process (a removed one's is not reused). */
  private readonly bits = new Map<TrackerListener, number>();
  private readonly bitOf = (l: TrackerListener): number => {
    let b = this.bits.get(l);
    if (b === undefined) {
      b = this.bits.size < MUTABLE_LISTENERS ? 1 << this.bits.size : 0;
      this.bits.set(l, b);
    }
    return b;
  };
  private hooks: Hooks = new Hooks([], this.bitOf);
  readonly internalErrors = new Map<string, number>();
  private ring: Finding[] = [];
  private readonly ringSize = DEFAULT_RING;
  private ringStart = 0;
  private readonly findingListeners = new Set<(f: Finding) => void>();
  /** > 0 while streamscope's own listeners run: async resources created then are ours, not the stream's. */
  internalDepth = 0;

  /** The sweep's timer: running while any stream is open or lingering (started by every add to either list). */
  private sweepTimer: NodeJS.Timeout | undefined = undefined;

  /** Consumers' slot indexes on each stream (StreamState.slots), by name: two copies of a consumer share one. */
  private readonly slotIndex = new Map<string, number>();

  /**
   * The trackAsync context (src/consumers/detectors/async-tracking.ts installs it with `useAsyncContext`): runs a
   * handler, or the rest of a dispatch, in a stream's async context. null until installed: handlers then run as they are.
   */
  asyncContext: AsyncContext | null = null;

  /** Installs the trackAsync context, once per process (the first copy of the package to ask wins). */
  useAsyncContext(ctx: AsyncContext): void {
    if (this.asyncContext === null) this.asyncContext = ctx;
  }

  /** The slot index of a consumer's per-stream data (see StreamState.slot). */
  slot(name: string): number {
    let i = this.slotIndex.get(name);
    if (i === undefined) {
      i = this.slotIndex.size;
      this.slotIndex.set(name, i);
      if (slotCount.n <= i) slotCount.n = i + 1;
    }
    return i;
  }

  /**
   * A consumer registers itself: subscribed once per component, even when two copies of the package
   * (ESM and CJS, or two versions) each register theirs, so every stream is counted once.
   */
  register(listener: TrackerListener): void {
    if (!this.listeners.some((l) => l.component === listener.component)) {
      this.listeners.push(listener);
      this.hooks = new Hooks(this.listeners, this.bitOf);
    }
  }

  subscribe(listener: TrackerListener): () => void {
    this.listeners.push(listener);
    this.hooks = new Hooks(this.listeners, this.bitOf);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) {
        this.listeners.splice(i, 1);
        this.hooks = new Hooks(this.listeners, this.bitOf);
      }
    };
  }

  /** Counts a fault inside streamscope; the app never sees it. */
  fault(component: string, err?: unknown): void {
    this.internalErrors.set(component, (this.internalErrors.get(component) ?? 0) + 1);
    if (debug.enabled) {
      try {
        debug('internal error in %s: %s', component, (err as Error)?.stack ?? err);
      } catch {
        /* nothing */
      }
    }
  }

  emit(event: EventName, s: StreamState, arg?: number | Finding): void {
    // the blocked list follows the episodes whatever the listeners (a close ends an episode with a `drain`)
    if (event === 'writeBlocked') this.blocked.add(s);
    else if (event === 'drain') this.blocked.delete(s);
    // a listener added or removed by a handler changes `this.hooks`, not the arrays this loop reads
    const { fns, owners, bits, mutable } = hooksFor(this.hooks, event);
    const n = fns.length;
    if (n === 0) return;
    const muted = s.muted;
    if (mutable !== -1 && (mutable & ~muted) === 0) return;
    this.internalDepth++;
    for (let i = 0; i < n; i++) {
      const bit = bits[i] as number;
      if ((muted & bit) !== 0) continue;
      try {
        if ((fns[i] as Hook).call(owners[i] as TrackerListener, s, arg) === false && event === 'open') s.muted |= bit;
      } catch (err) {
        this.fault((owners[i] as TrackerListener).component, err);
      }
    }
    this.internalDepth--;
  }

  /** Raises a finding once per stream and kind. Returns false when it was raised before. */
  raise(s: StreamState, kind: FindingKind, severity: Finding['severity'], detail: string, stack?: string): boolean {
    if (s.findings.includes(kind)) return false;
    if (s.findings === NO_FINDINGS) s.findings = [kind];
    else s.findings.push(kind);
    const now = Date.now();
    const f: Finding = {
      kind,
      severity,
      streamId: s.id,
      route: s.route,
      method: s.method,
      ageMs: Math.round(performance.now() - s.t0),
      detail,
      at: now,
    };
    const st = stack ?? s.stack;
    if (st !== undefined) f.stack = st;
    this.remember(f);
    this.emit('finding', s, f);
    for (const l of this.findingListeners) {
      try {
        l(f);
      } catch (err) {
        this.fault('onFinding', err);
      }
    }
    return true;
  }

  /** `onFinding()`: a listener of every finding (after the consumers). Returns its removal. */
  onFinding(listener: (f: Finding) => void): () => void {
    this.findingListeners.add(listener);
    return () => {
      this.findingListeners.delete(listener);
    };
  }

  private remember(f: Finding): void {
    if (this.ring.length < this.ringSize) {
      this.ring.push(f);
    } else {
      this.ring[this.ringStart] = f;
      this.ringStart = (this.ringStart + 1) % this.ringSize;
    }
  }

  /** The most recent findings, oldest first (a bounded ring, 1,000 by default). */
  recentFindings(): Finding[] {
    return this.ring.slice(this.ringStart).concat(this.ring.slice(0, this.ringStart));
  }

  // ── Lifecycle transitions (the only places that assign `s.phase`; see `Phase` in stream-state.ts) ──

  /** Pending → Discarded: a short response, not a stream. */
  discard(s: StreamState): void {
    if (s.phase === Phase.Pending) s.phase = Phase.Discarded;
  }

  /**
   * Pending → Open. Returns false (and changes nothing) when the stream is not pending. The hook then
   * wires the response and calls `opened()`.
   */
  markOpen(s: StreamState): boolean {
    if (s.phase !== Phase.Pending) return false;
    s.phase = Phase.Open;
    return true;
  }

  /**
   * From now on the stream's counts also go to `totals` (a consumer's per-route running totals, given at open), with
   * what it counted before (while pending). Once per stream.
   */
  countInto(s: StreamState, totals: WriteTotals): void {
    totals.writes += s.writes;
    totals.bytes += s.bytes;
    totals.blocked += s.blockedWrites;
    totals.afterClose += s.writesAfterClose;
    s.totals = totals;
  }

  /** An Open stream is listed and announced to the consumers, with what happened while it was pending. */
  opened(s: StreamState): void {
    this.open.add(s);
    this.watch(s);
    this.emit('open', s);
    if (s.firstWriteAt >= 0) this.emit('firstWrite', s);
    if (s.blockedSince >= 0) this.emit('writeBlocked', s);
  }

  /** Open → Closed. Returns false when the stream was not open. The hook then sets the outcome, emits `close` and calls `settle()`. */
  markClosed(s: StreamState, now: number): boolean {
    if (s.phase !== Phase.Open) return false;
    s.phase = Phase.Closed;
    s.closedAt = now;
    return true;
  }

  /** A closed stream stays in `lingering` while its producer holds it, else it is released. */
  settle(s: StreamState): void {
    this.open.delete(s);
    if (this.producerHolds(s)) {
      // Closed but still held by its producer: hold its response weakly, so that a heap snapshot shows
      // the producer, not streamscope, as what retains it.
      s.holdWeakly();
      this.lingering.add(s);
      this.watch(s);
    } else {
      this.release(s);
    }
  }

  /**
   * A handler starts to run for the stream (track() for instrument and the adapters, `sse().run()`): the stream
   * is held until `handlerSettled`. Returns false (and changes nothing) when a handler already holds it.
   */
  handlerRuns(s: StreamState): boolean {
    if (!s.handlerSettled) return false;
    s.handlerSettled = false;
    return true;
  }

  /** The handler's promise settled (instrument, the adapters, sse): a closed stream may now be released. */
  handlerSettled(s: StreamState): void {
    s.handlerSettled = true;
    if (s.phase === Phase.Closed && this.lingering.has(s) && !this.producerHolds(s)) this.release(s);
  }

  /**
   * The producer holds a closed stream while its handler has not settled, async work it created lives, or it still
   * writes. The clock is read (when `now` is not given) only for a stream written to after close.
   */
  producerHolds(s: StreamState, now = -1): boolean {
    if (!s.handlerSettled) return true;
    const a = this.asyncContext;
    if (a !== null && a.live(s) > 0) return true;
    if (s.writesAfterClose === 0) return false;
    return writesHold(s, now < 0 ? performance.now() : now);
  }

  /** A slice of the walk over the lingering streams is due in an immediate. */
  private sliceScheduled = false;
  /** Slices of the walk over the lingering streams, and the streams they visited (for the tests and the benchmark). */
  readonly lingerStats = { slices: 0, visited: 0, lastSlice: 0 };

  /**
   * One slice of the sweep's walk over the lingering streams (starting one unless one is under way): for each, the
   * listeners' `lingering`, then its release if its producer let go; at most LINGER_SLICE streams, and none past
   * `startedAt` + LINGER_SLICE_MS once LINGER_SLICE_MIN are done. What is left goes on in the next turn
   * (an immediate), where this one stopped: every stream lingering when the walk started is visited once a walk.
   */
  private lingerSlice(startedAt: number, first: boolean): void {
    const list = this.lingering;
    list.startWalk();
    let now = performance.now();
    const fns: TrackerListener[] = [];
    for (const l of this.listeners) {
      if (typeof l.lingerSlice === 'function') {
        try {
          l.lingerSlice(now, first);
        } catch (err) {
          this.fault(l.component, err);
        }
      }
      if (typeof l.lingering === 'function') fns.push(l);
    }
    const until = startedAt + LINGER_SLICE_MS;
    let n = 0;
    this.lingerStats.slices++;
    for (;;) {
      const s = list.nextInWalk();
      if (s === undefined) break;
      n++;
      for (const l of fns) {
        try {
          (l.lingering as (s: StreamState, now: number) => void)(s, now);
        } catch (err) {
          this.fault(l.component, err);
        }
      }
      if (s.phase === Phase.Closed && list.has(s) && !this.producerHolds(s, now)) this.release(s);
      if (n >= LINGER_SLICE || ((n & 15) === 0 && n >= LINGER_SLICE_MIN && (now = performance.now()) >= until)) break;
    }
    this.lingerStats.visited += n;
    this.lingerStats.lastSlice = n;
    if (list.walking && !this.sliceScheduled) {
      this.sliceScheduled = true;
      // created inside the sweep (internalDepth > 0) or a slice: never a stream's async resource (trackAsync)
      setImmediate(lingerSliceOf, this);
    }
  }

  /** The next slice of the walk (an immediate): a turn of its own. */
  nextLingerSlice(): void {
    this.sliceScheduled = false;
    this.internalDepth++;
    try {
      this.lingerSlice(performance.now(), false);
    } catch (err) {
      this.fault('tracker', err);
    } finally {
      this.internalDepth--;
    }
  }

  /**
   * The write path: the stream was written to (counted), and is not in `written` yet. No allocation but the list's
   * occasional growth (it keeps its length from sweep to sweep).
   */
  wrote(s: StreamState): void {
    // no sweep runs (none to clear the list: after a shutdown, say): nothing to note
    if (this.sweepTimer === undefined) return;
    s.written = true;
    this.written[this.writtenCount++] = s;
  }

  /**
   * A released stream leaves `written` (the sweep looks only at open streams there), so that the list does not keep
   * it alive until the next sweep: a short stream then dies young, where one kept for up to SWEEP_MS outlives the
   * young generation's collections and is copied, then promoted, by the garbage collector. Its entry is looked for
   * among the last WRITTEN_LOOKBACK (a stream released soon after its first write, as short streams are, is near
   * the end); one further back stays until the sweep clears it, as before.
   */
  private unwrite(s: StreamState): void {
    const w = this.written;
    const end = this.writtenCount - 1;
    const stop = end - WRITTEN_LOOKBACK < 0 ? 0 : end - WRITTEN_LOOKBACK;
    for (let i = end; i >= stop; i--) {
      if (w[i] !== s) continue;
      w[i] = undefined;
      if (i === end) this.writtenCount = end;
      s.written = false;
      return;
    }
  }

  /** Empties `written` (the end of each sweep; and shutdown): its streams are looked at afresh from the next write. */
  clearWritten(): void {
    const w = this.written;
    for (let i = 0; i < this.writtenCount; i++) {
      const s = w[i];
      if (s !== undefined) s.written = false;
      w[i] = undefined;
    }
    this.writtenCount = 0;
  }

  /**
   * The sweep: every listener's `sweep` (the detectors), then the walk over the lingering streams (the listeners'
   * `lingering`, then the release of what its producer let go), in slices of a turn each (`lingerSlice`). It runs
   * while any stream is open or lingering, whatever its consumers: every add to either list starts it (`watch`), and it stops itself only
   * when both are empty, so a zombie that writes once a minute is seen at each write.
   */
  sweep(): void {
    // what the sweep starts (the detectors' kernel reads) belongs to no stream (trackAsync)
    this.internalDepth++;
    try {
      const now = performance.now();
      for (const l of this.listeners) {
        if (typeof l.sweep !== 'function') continue;
        try {
          l.sweep(now);
        } catch (err) {
          this.fault(l.component, err);
        }
      }
      this.clearWritten();
      // the lingering streams, in slices: the first now (its budget counted from the sweep's start), unless a walk's
      // next slice is already due (it goes on, in its own turn)
      if (!this.sliceScheduled && this.lingering.size > 0) this.lingerSlice(now, true);
      if (this.open.size === 0 && this.lingering.size === 0) this.stopSweep();
    } catch (err) {
      this.fault('tracker', err);
    } finally {
      this.internalDepth--;
    }
  }

  /**
   * Starts the sweep's timer unless it runs (unref'd: it never keeps the process alive). A stream tracked before
   * a shutdown() that opens, lingers or writes on after it starts nothing (it finishes unwatched).
   */
  private watch(s: StreamState): void {
    if (this.sweepTimer !== undefined || !isLive(s.config)) return;
    // created inside a handler's call: internal, never one of the stream's async resources (trackAsync)
    this.internalDepth++;
    try {
      this.sweepTimer = setInterval(sweepTracker, SWEEP_MS, this);
      this.sweepTimer.unref();
    } finally {
      this.internalDepth--;
    }
  }

  /** Stops the sweep's timer (the sweep does when nothing is left to watch; the next open or lingering stream starts it again). */
  stopSweep(): void {
    if (this.sweepTimer === undefined) return;
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  /**
   * A write after the client left (the hook calls it at `now`, the only clock read of such a write). A stream
   * released at close whose producer writes on goes back to Closed, in `lingering`, to be watched again (and
   * the sweep with it). `writeAfterClose` is emitted for the first such write, and for each one after the
   * stream's `release` (no later event would carry its tally to the consumers: `release` is emitted once).
   */
  wroteAfterClose(s: StreamState, now: number): void {
    const prev = s.lastWriteAt >= 0 ? s.lastWriteAt : s.closedAt;
    if (prev >= 0 && now - prev > s.afterCloseGap) s.afterCloseGap = now - prev;
    s.lastWriteAt = now;
    s.writesAfterClose++;
    s.totals.afterClose++;
    if (s.phase === Phase.Released) {
      s.phase = Phase.Closed;
      this.lingering.add(s);
      this.watch(s);
    }
    if ((s.writesAfterClose === 1 || s.released) && s.phase >= Phase.Open) this.emit('writeAfterClose', s);
  }

  /**
   * → Released: the tracker forgets the stream. Its consumers see `release` once per stream: a stream that a
   * write brought back (`wroteAfterClose`) is forgotten again without a second one.
   */
  release(s: StreamState): void {
    // what each list's `has` looks at first: a stream with no slot is in none (a short stream, at its close)
    if (s.listSlot >= 0) {
      this.open.delete(s);
      this.lingering.delete(s);
    }
    if (s.blockedSlot >= 0) this.blocked.delete(s);
    s.phase = Phase.Released;
    if (s.written) this.unwrite(s);
    if (!s.released) {
      s.released = true;
      this.emit('release', s);
    }
    s.drop();
    s.parentContext = undefined;
  }

  // ── What entry points and consumers report: the core decides (outcomes: src/core/outcome.ts) ──

  /** The stream of a response (or HTTP/2 stream), if streamscope tracks it. */
  stateOf(res: object): StreamState | undefined {
    return (res as { [kState]?: StreamState })[kState];
  }

  /** The server side failed (a handler threw, a framework's error hook, `sse().fail()`, a guard's cut): outcome `error`. */
  markError(s: StreamState): void {
    outcome.markError(s);
  }

  /** The stream's own deadline passed (sse's `timeoutMs`, a drain timeout): outcome `timeout`. */
  markTimeout(s: StreamState): void {
    outcome.markTimeout(s);
  }

  /** The server closed an open stream for a reason of its own (a guard's dead-peer check): outcome `error`. */
  serverCut(s: StreamState): void {
    outcome.serverCut(s, true);
  }

  /** The trace of the stream's span (tracing), shown in `streams()`. */
  setTraceId(s: StreamState, traceId: string): void {
    s.traceId = traceId;
  }

  snapshot(s: StreamState, now = performance.now()): StreamSnapshot {
    const res = s.res;
    return {
      id: s.id,
      route: s.route,
      method: s.method,
      startedAt: Math.round(s.startedAt),
      ageMs: Math.round(now - s.t0),
      firstWriteMs: s.firstWriteAt < 0 ? null : Math.round((s.firstWriteAt - s.t0) * 1000) / 1000,
      bytes: s.bytes,
      writes: s.writes,
      blockedWrites: s.blockedWrites,
      blockedForMs: s.blockedSince < 0 ? 0 : Math.round(now - s.blockedSince),
      bufferedBytes: res !== null && !res.destroyed ? res.writableLength : 0,
      clientClosed: s.clientClosed,
      ended: s.ended,
      writesAfterClose: s.writesAfterClose,
      traceId: s.traceId,
      findings: s.findings.slice(),
    };
  }

  /** Open streams, plus closed ones that were flagged and whose producer still holds them. */
  streams(): StreamSnapshot[] {
    const now = performance.now();
    const out: StreamSnapshot[] = [];
    for (const s of this.open.values()) out.push(this.snapshot(s, now));
    for (const s of this.lingering.values()) if (s.findings.length > 0) out.push(this.snapshot(s, now));
    return out;
  }
}

function sweepTracker(t: Tracker): void {
  t.sweep();
}

function lingerSliceOf(t: Tracker): void {
  t.nextLingerSlice();
}

/**
 * Writes after close hold the stream for `danglingAfterMs` after the last one, or for twice the longest wait the
 * producer has left between them when that is longer: a heartbeat every 1.5 s (or a zombie writing once a
 * minute) holds its stream between writes, whatever the threshold.
 */
export function writesHold(s: StreamState, now: number): boolean {
  if (s.writesAfterClose === 0 || s.lastWriteAt < 0) return false;
  const gap = 2 * s.afterCloseGap;
  return now - s.lastWriteAt < (gap > s.config.danglingAfterMs ? gap : s.config.danglingAfterMs);
}

const g = globalThis as unknown as Record<symbol, Tracker | undefined>;

/** The one tracker of this process, shared by every copy of the package. */
export function getTracker(): Tracker {
  let t = g[kTracker];
  if (t === undefined) {
    t = new Tracker();
    g[kTracker] = t;
  }
  return t;
}

/**
 * shutdown(): the sweep stops (streams still open finish unwatched: no finding after a shutdown), and the closed
 * streams that lingered are released now, since no sweep will come to release them.
 */
function stopSweeping(): void {
  const t = getTracker();
  t.stopSweep();
  t.lingering.each((s) => t.release(s));
  t.clearWritten();
}
atShutdown(stopSweeping, 20);
