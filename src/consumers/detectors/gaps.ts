import { performance } from 'node:perf_hooks';
import type { ServerResponse } from 'node:http';
import { Phase, type StreamState } from '../../core/stream-state.js';
import { getTracker } from '../../core/tracker.js';
import { routeMetricsOf } from '../metrics.js';
import type { HistogramChild } from '../histogram.js';
import { givenWrites, msOf, watchOf, type Watch } from './buffered.js';

/**
 * Gaps between writes (docs/metrics.md):
 *
 * - `stream_longest_write_gap_seconds`, every stream, no per-write cost: the detectors' sweep (every 250 ms)
 *   reads the stream's write count; a gap is seen as a run of sweeps where the count did not move. Its ends
 *   are placed from the sweeps around it and the producer's pace just before it (half a write spacing before
 *   the sweep that saw the last write, and after the run as many spacings before the sweep that saw the next
 *   writes as it saw writes); writes seen in consecutive sweeps count as their mean spacing. Observed once at
 *   close, for streams with two writes or more.
 * - `stream_write_gap_seconds`, opt-in (`writeGaps: true`): every gap, from a clock read on each write (a
 *   wrapper over `res.write` on that route's streams only).
 */

const tracker = getTracker();


/** writeGaps streams: the write below the wrapper, the previous write's time, the route's histogram. */
class Every {
  readonly inner: ServerResponse['write'];
  lastWriteAt = -1;
  readonly hist: HistogramChild | null;
  constructor(inner: ServerResponse['write'], hist: HistogramChild | null) {
    this.inner = inner;
    this.hist = hist;
  }
}

/** writeGaps streams' state (opt-in: kept off the Watch every stream has). */
const every = new WeakMap<StreamState, Every>();

/** One look at the write count `w` at `t` (ms since the stream's start: a sweep, or the close). */
function step(g: Watch, w: number, t: number): void {
  const dw = w - g.lastWrites;
  if (dw > 0) {
    const len = t - g.prevLookAt;
    let est = -1;
    if (g.lastChangeAt >= 0 && g.prevLookAt > g.lastChangeAt) {
      // a run of sweeps without a write: from the last write before it to the first one after it
      const spacing = g.spacing;
      const lastBefore = g.lastChangeAt - spacing / 2;
      const firstAfter = Math.max(g.prevLookAt, t - (dw - 0.5) * spacing);
      est = firstAfter - lastBefore;
    } else if (g.lastChangeAt >= 0 || dw >= 2) {
      est = len / dw;
    }
    if (est > g.longestMs) g.longestMs = Math.round(est);
    g.lastChangeAt = t;
    g.spacing = Math.round(len / dw);
    g.lastWrites = w;
  }
  g.prevLookAt = t;
}

/**
 * The last sweep's time (performance.now(); -Infinity before the first). The sweep looks only at the streams
 * written to since the one before (`tracker.written`): for a stream that did not write, a look changes nothing but
 * `prevLookAt`, so a stream's next look first takes the last sweep as its previous look (`catchUp`), as if that
 * sweep had looked at it: the same figures as a look at every open stream at every sweep, for the writers' cost only.
 */
let lastSweepAt = -Infinity;

function catchUp(s: StreamState, g: Watch): void {
  if (lastSweepAt === -Infinity) return;
  const t = msOf(s, lastSweepAt);
  if (t > g.prevLookAt) g.prevLookAt = t;
}

/** The sweep: one look at each open stream written to since the last sweep. Returns how many it looked at. */
export function sweepGaps(now: number): number {
  const list = tracker.written;
  const n = tracker.writtenCount;
  let looked = 0;
  for (let i = 0; i < n; i++) {
    const s = list[i];
    if (s === undefined || s.phase !== Phase.Open || s.clientClosed) continue;
    const g = watchOf(s);
    if (g === undefined) continue;
    looked++;
    catchUp(s, g);
    step(g, givenWrites(s), msOf(s, now));
  }
  lastSweepAt = now;
  return looked;
}

/** `res.write` of a `writeGaps` stream: the gap since the previous write, then the write below. */
function gapWrite(this: ServerResponse): boolean {
  const s = tracker.stateOf(this);
  const g = s === undefined ? undefined : every.get(s);
  // eslint-disable-next-line prefer-rest-params
  const args = arguments as unknown as Parameters<ServerResponse['write']>;
  if (s === undefined || g == null) return Object.getPrototypeOf(this).write.apply(this, args);
  if (!s.clientClosed) {
    const now = performance.now();
    if (g.lastWriteAt >= 0 && g.hist !== null) g.hist.observe((now - g.lastWriteAt) / 1000);
    g.lastWriteAt = now;
  }
  return g.inner.apply(this, args);
}

/** The gaps' part of a stream's lifecycle (registered with the wire checks' as one listener: detectors/index.ts). */
export const gapsListener = {
  open(s: StreamState): void {
    const g = watchOf(s);
    if (g === undefined) return;
    const w = givenWrites(s);
    if (w > 0) {
      // written before it opened (promoted after its first write): the open is the look that saw them
      const now = msOf(s, performance.now());
      g.lastWrites = w;
      g.lastChangeAt = now;
      g.spacing = s.firstWriteAt >= 0 ? Math.round(Math.max(0, now - msOf(s, s.firstWriteAt)) / w) : 0;
      g.prevLookAt = now;
    } else {
      g.prevLookAt = msOf(s, performance.now());
    }
    const res = s.res as ServerResponse | null;
    if (s.config.writeGaps === true && res !== null && typeof res.write === 'function') {
      const rm = routeMetricsOf(s);
      const e = new Every(res.write, rm === null ? null : rm.writeGap());
      if (w === 1 && s.firstWriteAt >= 0) e.lastWriteAt = s.firstWriteAt;
      every.set(s, e);
      res.write = gapWrite as ServerResponse['write'];
    }
  },
  close(s: StreamState): void {
    const g = watchOf(s);
    if (g === undefined) return;
    catchUp(s, g);
    step(g, givenWrites(s), msOf(s, s.closedAt));
    if (g.longestMs >= 0) routeMetricsOf(s)?.longestGap.observe(g.longestMs / 1000);
  },
};
