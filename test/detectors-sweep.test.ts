import { describe, expect, it } from 'vitest';
import type http from 'node:http';
import { Phase, StreamState } from '../src/core/stream-state.js';
import { getTracker } from '../src/core/tracker.js';
import { detectorsListener, RAISE_BUDGET_MS, sweep } from '../src/consumers/detectors/index.js';
import { beginTick, DECIDE_BUDGET_MS, deciding, has, raise } from '../src/consumers/detectors/raising.js';
import type { Finding } from '../src/types.js';
import { unitConfig } from './helpers/stream-config.js';

// Unit test of the sweep's pure logic on tracker states (no sockets): a burst of findings is raised over
// several ticks (a bounded amount of work per tick), and each stream still gets each kind exactly once, in the
// order the sweep found them, even when it is released before its turn.
describe('detector sweep', () => {
  it('2,000 streams stalled together: each gets exactly one stalled_write, in the order found, raised over more than one tick; a stream released before its turn still gets it', async () => {
    const tracker = getTracker();
    const config = unitConfig('/burst', 10, 10);
    while (performance.now() < 50) {
      // busy-wait: the clock must be past the threshold
    }
    const n = 2000;
    const states: StreamState[] = [];
    for (let i = 0; i < n; i++) {
      const s = new StreamState({ method: 'GET' } as http.IncomingMessage, { destroyed: true } as http.ServerResponse, config, 0);
      s.phase = 1;
      s.route = '/burst';
      s.blockedSince = 0; // blocked since the process started (stallAfterMs is 10)
      tracker.open.add(s);
      // the write path's writeBlocked event puts a blocked stream on the tracker's blocked list (what the sweep visits)
      tracker.blocked.add(s);
      states.push(s);
    }
    // the loop's turns, counted by an immediate that re-arms itself: a finding raised in a later turn than the
    // sweep's was deferred, whatever the machine's speed
    let turn = 0;
    let spinning = true;
    const spin = (): void => {
      turn++;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    const seen: { id: number; turn: number }[] = [];
    // an app's listener that costs something (say it logs): 2,000 of them cannot all fit in one tick's budget.
    // Each finding takes at least LISTENER_MS, so one turn of the loop can raise no more than its budget allows
    // (the clock is read every 8 findings), on any machine, however slow
    const LISTENER_MS = 0.02;
    const perTurnMax = Math.floor(RAISE_BUDGET_MS / LISTENER_MS) + 9;
    const off = tracker.onFinding((f: Finding) => {
      if (f.kind !== 'stalled_write' || f.route !== '/burst') return;
      seen.push({ id: f.streamId, turn });
      const t = performance.now();
      while (performance.now() - t < LISTENER_MS) {
        // 20 µs of listener work per finding
      }
    });
    const released = new Set<StreamState>();
    try {
      sweep();
      // the first sweep takes each stream's baseline: one sample shows no span without progress
      expect(seen.length).toBe(0);
      const t = performance.now();
      while (performance.now() - t < 20) {
        // busy-wait: the next samples are more than stallAfterMs (10) after the baselines
      }
      const sweepTurn = turn;
      sweep();
      const inSweep = seen.length;
      expect(inSweep).toBeLessThan(n);
      // streams the sweep found but whose finding has not been raised yet are released (their client and
      // producer gone): they still get it
      for (const s of states) {
        if (released.size === 5) break;
        if (has(s, 'stalled_write') && !s.findings.includes('stalled_write')) {
          released.add(s);
          tracker.release(s);
        }
      }
      expect(released.size).toBe(5);
      // the loop turns; every 5th turn a sweep runs, as the tracker's timer would (often: while findings wait,
      // so a sweep that runs before they are raised must not decide them again; it decides those the first
      // left when its time to decide was spent)
      for (let i = 1; i < 100_000 && seen.length < n; i++) {
        await new Promise((r) => setImmediate(r));
        if (i % 5 === 0) sweep();
      }

      // every stream exactly once
      expect(seen.length).toBe(n);
      const perStream = new Map<number, number>();
      for (const { id } of seen) perStream.set(id, (perStream.get(id) ?? 0) + 1);
      expect(perStream.size).toBe(n);
      expect([...perStream.values()].every((c) => c === 1)).toBe(true);
      expect(states.every((s) => s.findings.length === 1 && s.findings[0] === 'stalled_write')).toBe(true);
      for (const s of released) expect(perStream.get(s.id)).toBe(1);
      // in the order the sweep found them (it walks the open list last first)
      expect(seen.map((x) => x.id)).toEqual(states.map((s) => s.id).reverse());
      // raised over several turns of the loop: those of the sweep's own tick (as many as its budget allowed,
      // maybe none when the checks used it up), then the rest, a share per turn
      const turns = new Set(seen.map((x) => x.turn));
      expect(turns.size).toBeGreaterThan(1);
      const perTurn = new Map<number, number>();
      for (const { turn: t } of seen) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
      expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(perTurnMax);
      expect(seen.filter((x) => x.turn === sweepTurn).length).toBe(inSweep);
    } finally {
      off();
      spinning = false;
      for (const s of states) {
        tracker.open.delete(s);
        tracker.blocked.delete(s);
      }
    }
  });

  it('a tick that began with its raising window open raises its first finding at once, even when its check ended past the window (a descheduled process)', async () => {
    const tracker = getTracker();
    const config = unitConfig('/late-check', 10, 10);
    // the windows of earlier ticks are over, and rested
    await new Promise((r) => setTimeout(r, 4 * RAISE_BUDGET_MS));
    const s = new StreamState({ method: 'GET' } as http.IncomingMessage, { destroyed: true } as http.ServerResponse, config, 0);
    s.route = '/late-check';
    const seen: string[] = [];
    const off = tracker.onFinding((f: Finding) => {
      if (f.route === '/late-check') seen.push(f.kind);
    });
    try {
      // a kernel sample arrives (checkSampled: beginTick, then the checks), and the process loses the CPU meanwhile
      beginTick();
      const t = performance.now();
      while (performance.now() - t < 3 * RAISE_BUDGET_MS) {
        // the check's turn ends past the window: seen as 12-19 ms on a loaded machine
      }
      expect(raise(s, 'stalled_write', 'warning', 'no progress')).toBe(true);
      // raised in this turn, not queued for an immediate
      expect(seen).toEqual(['stalled_write']);
      // a second finding of the same tick, past the window, waits for its turn (the burst bound holds)
      expect(raise(s, 'zombie_producer', 'warning', 'writes after close')).toBe(true);
      expect(seen).toEqual(['stalled_write']);
      // then in a later turn, once the window rested
      for (let i = 0; i < 400 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
      expect(seen).toEqual(['stalled_write', 'zombie_producer']);
    } finally {
      off();
    }
  });

  it("past the tick's decide budget, a lingering stream whose producer let go still gets what it is owed before the walk releases it; one still held waits for the next walk", () => {
    const tracker = getTracker();
    const config = unitConfig('/owed', 60_000, 10);
    const make = (): StreamState => {
      const s = new StreamState({ method: 'GET' } as http.IncomingMessage, { destroyed: true } as http.ServerResponse, config, 0);
      s.route = '/owed';
      s.phase = Phase.Closed;
      s.closedAt = 0;
      s.clientClosed = true;
      s.writesAfterClose = 3; // a zombie: three writes after its client left
      return s;
    };
    // one whose writes stopped long ago (the walk releases it after this check), one whose writes go on (held)
    const letGo = make();
    letGo.lastWriteAt = 0;
    const held = make();
    while (performance.now() < 100) {
      // busy-wait: the clock must be past danglingAfterMs from the writes
    }
    held.lastWriteAt = performance.now();
    expect(tracker.producerHolds(letGo)).toBe(false);
    // a burst spent this tick's decide budget (a slice of the walk in a turn of its own, on a loaded machine)
    beginTick();
    const t = performance.now();
    while (performance.now() - t < DECIDE_BUDGET_MS + 1) {
      // past the budget's clock
    }
    for (let i = 0; i < 200 && deciding(); i++) raise(make(), 'zombie_producer', 'error', 'filler');
    expect(deciding()).toBe(false);
    // its producer wrote just now: it holds the stream
    held.lastWriteAt = performance.now();
    const now = performance.now();
    expect(tracker.producerHolds(held, now)).toBe(true);
    detectorsListener.lingering!(letGo, now);
    detectorsListener.lingering!(held, now);
    expect(has(letGo, 'zombie_producer')).toBe(true);
    // still held: the next walk decides it (its budget is not spent for it)
    expect(has(held, 'zombie_producer')).toBe(false);
  });
});
