import { performance } from 'node:perf_hooks';
import type { StreamState } from '../../core/stream-state.js';
import { atShutdown } from '../../core/switch.js';
import { getTracker } from '../../core/tracker.js';
import type { Finding, FindingKind } from '../../types.js';

/**
 * How the detectors raise findings: a bounded amount of work per tick. A check decides a finding; it is raised
 * (the tracker's `raise`: the ring, the consumers, `onFinding`) at once while the tick's time budget lasts, and
 * otherwise in the following ticks, in the order decided.
 */

const tracker = getTracker();

/**
 * Time the detectors spend raising findings in one tick, at most (each finding costs its consumers a few µs —
 * the ring, the metric, the span event — and an app's `onFinding` listener what it costs): a burst of thousands,
 * say every stream of a dead proxy stalling at once, is raised over several ticks (`setImmediate`) instead of
 * holding the event loop once. Each finding is decided once, when its check sees it, and raised once, in the
 * order found; a stream that closes or is released before its turn still gets it (docs/detectors.md).
 */
export const RAISE_BUDGET_MS = 3;
/**
 * Findings one turn of the event loop raises, at most, whatever the clock says: on a loaded machine (or while a GC
 * pause stretches the clock) the time budget alone lets a turn raise thousands (2,130 in one in a 10,000-stream
 * burst, bench/scale), each leaving garbage for the next GC pause. At about 2 µs each, 400 are under a millisecond.
 */
export const RAISE_PER_TURN = 400;
/**
 * Time from a sweep's start during which its checks decide findings, at most (deciding one — its detail, its place
 * in the queue — costs about a µs): past it, the checks stop deciding and the streams left are decided by the
 * next sweep, so a burst of 10,000 does not hold the sweep's own tick either.
 */
export const DECIDE_BUDGET_MS = 8;
/** Findings every tick may decide whatever the clock says (on a loaded machine a sweep's wall time can pass its budget before its first check): the checks always move. */
const MIN_DECISIONS = 100;

type Severity = Finding['severity'];
/** A finding decided by a check, waiting for its turn; `detail` and `stack` may be formatted only then. */
interface Pending {
  s: StreamState;
  kind: FindingKind;
  severity: Severity;
  detail: string | (() => string);
  stack: (() => string | undefined) | undefined;
}

/** Findings decided but not raised yet, in order (`head` is the next). */
let queue: (Pending | undefined)[] = [];
let head = 0;
/** The kinds waiting in `queue`, by stream (a bit per kind): a check that runs again before they are raised does not decide them twice. */
const waiting = new Map<StreamState, number>();
const BIT: Record<FindingKind, number> = { stalled_write: 1, dangling_stream: 2, zombie_producer: 4, dangling_async: 8, buffered_stream: 16, guard_action: 32 };
/** Until when the current window may raise (performance.now()); past it, findings wait for the next window. */
let deadline = -Infinity;
/** Whether the current window raised anything (an unused one needs no rest: a lone finding is raised at once). */
let raisedInWindow = false;
/** Findings the current window raised (at most RAISE_PER_TURN). */
let windowRaised = 0;
/**
 * The drain's runs (an immediate, one per turn of the loop while it is due): a used window is followed by a new one
 * only once a drain has run in a later turn than the one it opened in, so a turn of the loop holds one window
 * whatever the clock says. A window opened outside the drain (the sweep, a timer; a kernel sample's arrival) may
 * share its turn with the next drain (the immediates of the same turn): it waits for the drain after that one.
 */
let drainRuns = 0;
let windowDrain = -1;
let inDrain = false;
/** When the current window last raised (performance.now()). */
let lastRaiseAt = -Infinity;
let drainScheduled = false;
/** Until when the current tick may decide findings; once past, `closedForTick` until the next tick begins. */
let decideUntil = 0;
let closedForTick = false;
let decidedInTick = 0;
/**
 * The tick began with a raising window open and has raised nothing yet: its first finding is raised at once whatever
 * the clock says by then. On a loaded machine the check that decides it can end past the window (seen: 12-19 ms
 * after the tick began, the process descheduled), and a lone finding, the one a kernel sample decides, would wait
 * for an immediate for no burst at all.
 */
let firstFree = false;

/** May the checks of this tick still decide findings? (false once its decide budget is spent) */
export function deciding(): boolean {
  return !closedForTick;
}

/** Has the stream this kind, raised or waiting to be? (Checks ask this, not `s.hasFinding`.) */
export function has(s: StreamState, kind: FindingKind): boolean {
  if (s.hasFinding(kind)) return true;
  if (waiting.size === 0) return false;
  return ((waiting.get(s) ?? 0) & BIT[kind]) !== 0;
}

/**
 * Decides a finding: raised now if the tick's raise budget lasts and none waits, else queued behind those that do.
 * Returns false, deciding nothing, once the tick's decide budget is spent (the next sweep's checks see it again).
 */
export function raise(
  s: StreamState,
  kind: FindingKind,
  severity: Severity,
  detail: string | (() => string),
  stack?: () => string | undefined,
  /** Decide it even past the tick's decide budget: the stream is released right after this check and never checked again. */
  force = false,
): boolean {
  if (closedForTick && !force) return false;
  const now = performance.now();
  if (++decidedInTick > MIN_DECISIONS && now >= decideUntil && !force) {
    closedForTick = true;
    return false;
  }
  const p: Pending = { s, kind, severity, detail, stack };
  if (head === queue.length && windowRaised < RAISE_PER_TURN && (now < deadline || firstFree)) {
    firstFree = false;
    deliver(p);
    return true;
  }
  queue.push(p);
  waiting.set(s, (waiting.get(s) ?? 0) | BIT[kind]);
  scheduleDrain();
  return true;
}

function deliver(p: Pending): void {
  // a used window: the drains that tell the turns apart come (cheap: an immediate or two per window)
  if (!raisedInWindow) scheduleDrain();
  raisedInWindow = true;
  windowRaised++;
  try {
    const detail = typeof p.detail === 'function' ? p.detail() : p.detail;
    tracker.raise(p.s, p.kind, p.severity, detail, p.stack === undefined ? undefined : p.stack());
  } catch (err) {
    tracker.fault('detectors', err);
  }
  lastRaiseAt = performance.now();
}

/**
 * Raises waiting findings, in order, until `until` or until the window has raised `max` (at least one per call, so
 * that the queue always moves).
 */
function flush(until: number, max = Infinity): void {
  while (head < queue.length) {
    const p = queue[head] as Pending;
    queue[head++] = undefined;
    const w = (waiting.get(p.s) ?? 0) & ~BIT[p.kind];
    if (w === 0) waiting.delete(p.s);
    else waiting.set(p.s, w);
    deliver(p);
    if (windowRaised >= max && head < queue.length) {
      scheduleDrain();
      return;
    }
    // the clock is read every 8 findings (a finding costs a few µs; the read is not free either)
    if ((head & 7) === 0 && head < queue.length && performance.now() >= until) {
      scheduleDrain();
      return;
    }
  }
  queue = [];
  head = 0;
}

/**
 * A new raising window of RAISE_BUDGET_MS (and RAISE_PER_TURN findings) opens once the last one ended, and, if that
 * one raised anything, as long again has passed and the loop has turned (a drain ran): the
 * sweep (a timer) and the drain (an immediate) of one turn of the event loop, or a kernel sample's arrival, then share
 * one window instead of taking one each, so no turn raises for more than the budget, and a burst takes at most half
 * of the time it spans (the other half is the app's).
 */
function grant(now: number): void {
  if (now < deadline && windowRaised < RAISE_PER_TURN) return; // the current window lasts
  if (raisedInWindow) {
    // it was used: rest as long again from its end (its last raise, when the clock ran past it meanwhile), and
    // until the loop has turned
    if (now < Math.max(deadline, lastRaiseAt) + RAISE_BUDGET_MS || drainRuns <= windowDrain) return;
  }
  deadline = now + RAISE_BUDGET_MS;
  raisedInWindow = false;
  windowRaised = 0;
  windowDrain = inDrain ? drainRuns : drainRuns + 1;
}

function drain(): void {
  drainScheduled = false;
  drainRuns++;
  inDrain = true;
  try {
    const now = performance.now();
    grant(now);
    if (head === queue.length) {
      // nothing waits: come back once more if the window's turn has not passed yet (the next window needs it)
      if (raisedInWindow && drainRuns <= windowDrain) scheduleDrain();
      return;
    }
    // resting between two windows: the loop turns (I/O, the app's callbacks) and the drain comes back
    if (now >= deadline || windowRaised >= RAISE_PER_TURN) return scheduleDrain();
    flush(deadline, RAISE_PER_TURN);
  } finally {
    inDrain = false;
  }
}

function scheduleDrain(): void {
  if (drainScheduled) return;
  drainScheduled = true;
  // made in the sweep's context or the drain's own, never in an open stream's (trackAsync records none)
  setImmediate(drain);
}

/** A tick that checks streams starts (the sweep, a kernel sample's arrival): it may decide for DECIDE_BUDGET_MS, and raise while the current window lasts (see `grant`), unless findings already wait. */
export function beginTick(): void {
  const now = performance.now();
  grant(now);
  firstFree = now < deadline;
  decideUntil = now + DECIDE_BUDGET_MS;
  closedForTick = false;
  decidedInTick = 0;
}

/** shutdown(): what was decided before it is raised now (nothing is lost; no check runs after it). */
function flushAtShutdown(): void {
  flush(Infinity);
}
atShutdown(flushAtShutdown, 19);
