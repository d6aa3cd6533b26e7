import { performance } from 'node:perf_hooks';
import { Phase, type StreamState } from '../../core/stream-state.js';
import { getTracker, SWEEP_MS, writesHold, type TrackerListener } from '../../core/tracker.js';
import { asyncResourcesOf, installAsyncContext, liveAsync } from './async-tracking.js';
import { userFrames } from '../../core/stacks.js';
import { sweepWires, wireListener } from './buffered.js';
import { beginTick, DECIDE_BUDGET_MS, deciding, has, raise, RAISE_BUDGET_MS } from './raising.js';
import { gapsListener, sweepGaps } from './gaps.js';
import { foldBegin, foldEnd, foldStream } from '../metrics.js';
import { considerForSampling, isStalled, noProgressMs, observedReadRate, onEpisodeEnd, sampleCandidates, setOnSampled } from './progress.js';

/**
 * Leak detectors (docs/detectors.md). The tracker's sweep (one unref'd timer it owns, running while any stream
 * is open or lingering) calls them on the streams that can have something to do (blocked, watched on the wire,
 * written to since the last sweep, lingering); nothing per stream keeps the process alive. Each kind is raised once per stream.
 */

const tracker = getTracker();

/** How often the sweep runs (the tracker's); a finding comes within its threshold plus this (plus, on Linux, one read of the proc table). */
export { SWEEP_MS };
/** Writes after close that make a producer a zombie (one or two are a producer learning of the close). */
export const ZOMBIE_WRITES = 3;
/** Time the detectors spend raising findings in one tick, and a sweep deciding them, at most (src/consumers/detectors/raising.ts). */
export { DECIDE_BUDGET_MS, RAISE_BUDGET_MS };

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function fmtRate(bytesPerSec: number): string {
  return `${fmtBytes(Math.round(bytesPerSec))}/s`;
}

function checkOpen(s: StreamState, now: number): void {
  if (!deciding()) return;
  if (!has(s, 'stalled_write') && isStalled(s, now)) {
    const waited = now - s.blockedSince;
    const queued = s.res !== null && !s.res.destroyed ? s.res.writableLength : 0;
    const rate = observedReadRate(s);
    const still = noProgressMs(s);
    const source = rate.h2
      ? "the HTTP/2 stream's flow control"
      : rate.peer
        ? "the socket's send queue and the client socket's receive queue, on this host"
        : rate.kernel
          ? "the socket's send queue"
          : 'what the kernel accepted';
    raise(
      s,
      'stalled_write',
      'warning',
      `no progress for ${Math.round(still)} ms: a write has waited ${Math.round(waited)} ms for drain with ${fmtBytes(queued)} queued, ` +
        `and the client read ${fmtRate(rate.bytesPerSec)} over the last ${(rate.overMs / 1000).toFixed(1)} s (${source}): the client is not reading`,
    );
  }
}

function checkClosed(s: StreamState, now: number): void {
  // Past the tick's decide budget, a stream is left to the next walk, unless its producer let go: the tracker
  // releases it right after this check and it is never checked again, so what it is owed is decided now (a slice
  // of the walk is bounded, so is this). Before, a burst of zombies whose writes stopped by the time the walk came
  // was released undecided on a loaded machine: no zombie_producer for some. Such a stream's findings are forced
  // whether or not the budget was spent when its check began: the budget can run out inside the check (the raise
  // that finds the clock past it closes the tick), and that stream was released undecided (issue 19: 1,999 of 2,000
  // zombie_producer under CPU starvation, the process descheduled in the middle of a slice).
  const force = !tracker.producerHolds(s, now);
  if (!force && !deciding()) return;
  if (s.writesAfterClose >= ZOMBIE_WRITES && !has(s, 'zombie_producer')) {
    raise(s, 'zombie_producer', 'error', `${s.writesAfterClose} writes arrived after the client went away: the producer never stopped`, undefined, force);
  }
  const gone = now - s.closedAt;
  const asyncAlive = liveAsync(s);
  if (s.clientClosed && gone > s.config.danglingAfterMs && !has(s, 'dangling_stream')) {
    const why: string[] = [];
    if (!s.handlerSettled) why.push('its handler has not settled');
    if (writesHold(s, now)) why.push('writes keep arriving');
    if (asyncAlive > 0) why.push(`${asyncAlive} async resource(s) it created are alive`);
    if (why.length > 0) {
      raise(s, 'dangling_stream', 'error', `the client left ${Math.round(gone)} ms ago and the producer still holds the stream: ${why.join(', ')}`, undefined, force);
    }
  }
  if (asyncAlive > 0 && gone > s.config.danglingAfterMs && !has(s, 'dangling_async')) {
    // the resources are listed and their stacks formatted when the finding's turn comes (a burst formats nothing at once)
    let first: string | undefined;
    const detail = (): string => {
      const res = [...asyncResourcesOf(s)].map((r) => ({ type: r.type, stack: userFrames(r.holder) }));
      const types = new Map<string, number>();
      for (const r of res) types.set(r.type, (types.get(r.type) ?? 0) + 1);
      const list = types.size > 0 ? [...types].map(([t, n]) => `${n} ${t}`).join(', ') : `${asyncAlive} async resource(s)`;
      first = res.find((r) => r.stack !== undefined)?.stack;
      return `${list} created by the stream's handler still alive ${Math.round(gone)} ms after it closed`;
    };
    raise(s, 'dangling_async', 'warning', detail, () => first, force);
  }
}

/**
 * What the last sweep looked at, for the benchmark and the test that the sweep's work follows the streams that
 * can have something to do, not every open stream: blocked streams (stall sampling, checks and the gauges' fold,
 * each pass counted), the wire checks' streams, the streams written to since the sweep before, lingering streams.
 */
export const sweepStats = {
  sweeps: 0,
  /** Stream visits of the last sweep, all passes counted but the lingering streams' (walked in slices: the tracker's `lingerStats`). */
  visits: 0,
  /** Blocked streams, wire-watched streams, visits of the streams written to since the sweep before (gauges' fold and gaps), lingering streams. */
  blocked: 0,
  wired: 0,
  written: 0,
  lingering: 0,
};

/**
 * The detectors' part of the tracker's sweep (the tracker then releases what its producer let go). It visits only
 * the streams that can have something to do (docs/detectors.md, "What the sweep visits"): no pass over every open
 * stream.
 */
export function sweep(now = performance.now()): void {
  try {
    // the sweep's tick may raise for RAISE_BUDGET_MS from its start; what is found after that waits its turn
    beginTick();
    const blocked = tracker.blocked;
    let visits = 0;
    blocked.each((s) => {
      visits++;
      // an episode ends with `drain` (close emits one), which takes the stream off the list: this is a safety net
      if (s.phase !== Phase.Open || s.blockedSince < 0) blocked.delete(s);
      else considerForSampling(s, now);
    });
    sampleCandidates(now);
    blocked.each((s) => {
      visits++;
      checkOpen(s, now);
    });
    const nBlocked = blocked.size;
    // the metrics' gauges (src/consumers/metrics.ts foldStream): the blocked streams (the only ones that can be
    // stalled, or queue past their highWaterMark), and those written to since the last sweep (a write's bytes may
    // wait in their queue); a stream neither blocked nor written to for a sweep queues less than its highWaterMark,
    // normally nothing (docs/metrics.md, stream_buffered_bytes)
    const gen = foldBegin();
    blocked.each((s) => {
      visits++;
      foldStream(s, now, gen);
    });
    const written = tracker.written;
    let folded = 0;
    for (let i = 0, n = tracker.writtenCount; i < n; i++) {
      const s = written[i];
      if (s === undefined || s.phase !== Phase.Open || s.blockedSince >= 0) continue;
      folded++;
      foldStream(s, now, gen);
    }
    foldEnd(gen);
    const wired = sweepWires(now);
    const looked = sweepGaps(now);
    // the lingering streams' checks (checkClosed) run in the tracker's walk over them, in slices (`lingering` below)
    const lingering = tracker.lingering.size;
    sweepStats.sweeps++;
    sweepStats.visits = visits + folded + wired + looked;
    sweepStats.blocked = nBlocked;
    sweepStats.wired = wired;
    sweepStats.written = folded + looked;
    sweepStats.lingering = lingering;
  } catch (err) {
    tracker.fault('detectors', err);
  }
}

/**
 * The wire checks (buffered.ts) and the gaps (gaps.ts) as one listener: both read the stream's Watch at its open
 * and close, and a short stream paid a listener call for each (about 150-200 instructions a call on Node 24). Each
 * part keeps its own fault count (`wire`, `gaps`), and a fault in one leaves the other to run, as two listeners did.
 */
const watchListener: TrackerListener = {
  component: 'wire',
  open(s) {
    try {
      wireListener.open(s);
    } catch (err) {
      tracker.fault('wire', err);
    }
    try {
      gapsListener.open(s);
    } catch (err) {
      tracker.fault('gaps', err);
    }
  },
  firstWrite: wireListener.firstWrite,
  close(s) {
    try {
      wireListener.close(s);
    } catch (err) {
      tracker.fault('wire', err);
    }
    try {
      gapsListener.close(s);
    } catch (err) {
      tracker.fault('gaps', err);
    }
  },
};

/**
 * The gaps' name, registered with no handler: an older copy of the package in the process registers its own `wire`
 * and `gaps` listeners by name, and finds both taken (this copy's `wire` does the gaps' part), or takes both first.
 */
const GAPS: TrackerListener = { component: 'gaps' };

/** Registers the detectors (and trackAsync's context) with the tracker (once per process). */
export function install(): void {
  tracker.register(detectorsListener);
  tracker.register(watchListener);
  tracker.register(GAPS);
  installAsyncContext();
  setOnSampled(checkSampled);
}

/** The streams whose kernel sample just arrived: checked at once rather than at the next sweep. */
function checkSampled(list: readonly StreamState[]): void {
  try {
    const now = performance.now();
    beginTick();
    for (const s of list) if (s.closedAt < 0) checkOpen(s, now);
  } catch (err) {
    tracker.fault('detectors', err);
  }
}

/**
 * A slice of the tracker's walk over the lingering streams begins: one in a turn of its own (an immediate) may
 * decide findings afresh; the first runs in the sweep's tick and shares its budget.
 */
function lingerSlice(_now: number, first: boolean): void {
  if (!first) beginTick();
}

function lingering(s: StreamState, now: number): void {
  checkClosed(s, now);
}

export const detectorsListener: TrackerListener = {
  component: 'detectors',
  drain: onEpisodeEnd,
  sweep,
  lingerSlice,
  lingering,
};
