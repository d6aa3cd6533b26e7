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
export const RAISE_BUDGET_MS = 5;

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
/** Until when the current tick may raise (performance.now()); past it, findings wait for the next tick. */
let deadline = 0;
let drainScheduled = false;

/** Has the stream this kind, raised or waiting to be? (Checks ask this, not `s.hasFinding`.) */
export function has(s: StreamState, kind: FindingKind): boolean {
  if (s.hasFinding(kind)) return true;
  if (waiting.size === 0) return false;
  return ((waiting.get(s) ?? 0) & BIT[kind]) !== 0;
}

/** Decides a finding: raised now if the tick's budget lasts and none waits, else queued behind those that do. */
export function raise(s: StreamState, kind: FindingKind, severity: Severity, detail: string | (() => string), stack?: () => string | undefined): void {
  const p: Pending = { s, kind, severity, detail, stack };
  if (head === queue.length && performance.now() < deadline) {
    deliver(p);
    return;
  }
  queue.push(p);
  waiting.set(s, (waiting.get(s) ?? 0) | BIT[kind]);
  scheduleDrain();
}

function deliver(p: Pending): void {
  try {
    const detail = typeof p.detail === 'function' ? p.detail() : p.detail;
    tracker.raise(p.s, p.kind, p.severity, detail, p.stack === undefined ? undefined : p.stack());
  } catch (err) {
    tracker.fault('detectors', err);
  }
}

/** Raises waiting findings, in order, until `until` (at least one per call, so that the queue always moves). */
function flush(until: number): void {
  while (head < queue.length) {
    const p = queue[head] as Pending;
    queue[head++] = undefined;
    const w = (waiting.get(p.s) ?? 0) & ~BIT[p.kind];
    if (w === 0) waiting.delete(p.s);
    else waiting.set(p.s, w);
    deliver(p);
    // the clock is read every 8 findings (a finding costs a few µs; the read is not free either)
    if ((head & 7) === 0 && head < queue.length && performance.now() >= until) {
      scheduleDrain();
      return;
    }
  }
  queue = [];
  head = 0;
}

function drain(): void {
  drainScheduled = false;
  deadline = performance.now() + RAISE_BUDGET_MS;
  flush(deadline);
}

function scheduleDrain(): void {
  if (drainScheduled) return;
  drainScheduled = true;
  // made in the sweep's context or the drain's own, never in an open stream's (trackAsync records none)
  setImmediate(drain);
}

/** A tick that checks streams starts (the sweep, a kernel sample's arrival): it may raise for RAISE_BUDGET_MS, unless findings already wait. */
export function beginTick(): void {
  if (head === queue.length) deadline = performance.now() + RAISE_BUDGET_MS;
}

/** shutdown(): what was decided before it is raised now (nothing is lost; no check runs after it). */
function flushAtShutdown(): void {
  flush(Infinity);
}
atShutdown(flushAtShutdown, 19);
