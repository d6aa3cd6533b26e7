import { describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Phase, StreamState, type StreamConfig } from '../src/core/stream-state.js';
import { SWEEP_MS, Tracker } from '../src/core/tracker.js';
import { markLive } from '../src/core/switch.js';
import { sleep, until } from './helpers/http.js';

// The sweep's life (pure logic: a Tracker of its own, a state over plain objects). It is the tracker's: no
// consumer starts or restarts it, and it runs exactly while a stream is open or lingering.
const config = { stallAfterMs: 100, danglingAfterMs: 100, trackAsync: false, captureStacks: false, tracer: undefined, route: undefined } as StreamConfig;
// as an entry point's config is until a shutdown() (a config that is not live starts no sweep)
markLive(config);

describe("the tracker's sweep", () => {
  it('runs while a stream is open or lingering, stops when none is, and a write after release starts it again; release is emitted once', async () => {
    const t = new Tracker();
    let sweeps = 0;
    const seen: string[] = [];
    // a listener of the sweep only: nothing on open, nothing on writeAfterClose keeps the timer alive
    t.register({ component: 'sweeper', sweep: () => void sweeps++ });
    t.register({ component: 'log', release: () => void seen.push('release'), writeAfterClose: () => void seen.push('writeAfterClose') });
    const s = new StreamState({ method: 'GET' } as IncomingMessage, {} as ServerResponse, config, performance.now());
    expect(t.markOpen(s)).toBe(true);
    t.opened(s);
    await sleep(3 * SWEEP_MS);
    expect(sweeps).toBeGreaterThan(0);
    // closed with its handler settled and nothing written after: released at once, the next sweep stops the timer
    t.markClosed(s, performance.now());
    t.settle(s);
    expect(s.phase).toBe(Phase.Released);
    await sleep(2 * SWEEP_MS);
    const stopped = sweeps;
    await sleep(3 * SWEEP_MS);
    expect(sweeps).toBe(stopped);
    // the producer writes on: the stream is watched again and the sweep runs, whoever listens to what
    t.wroteAfterClose(s, performance.now());
    expect(t.lingering.has(s)).toBe(true);
    await sleep(2 * SWEEP_MS);
    expect(sweeps).toBeGreaterThan(stopped);
    // the write holds it for twice the wait since the close (about 2.5 s): then a sweep lets it go, without a second release
    const heldFor = 2 * s.afterCloseGap;
    expect(heldFor).toBeGreaterThan(4 * SWEEP_MS);
    const wroteAt = s.lastWriteAt;
    await until(() => !t.lingering.has(s), 'let go again', heldFor + 3000);
    expect(performance.now() - wroteAt).toBeGreaterThanOrEqual(heldFor);
    expect(seen).toEqual(['release', 'writeAfterClose']);
    // a second write after the release is announced too (no later event carries its tally), and the stream comes back
    t.wroteAfterClose(s, performance.now());
    expect(seen).toEqual(['release', 'writeAfterClose', 'writeAfterClose']);
    expect(s.writesAfterClose).toBe(2);
    t.stopSweep();
  });

  it('writes after close hold a stream for twice the longest wait between them when that is longer than danglingAfterMs', () => {
    const t = new Tracker();
    const s = new StreamState({ method: 'GET' } as IncomingMessage, {} as ServerResponse, config, 0);
    t.markOpen(s);
    t.markClosed(s, 1000);
    t.wroteAfterClose(s, 1050); // 50 ms after the close
    expect(t.producerHolds(s, 1050 + 99)).toBe(true);
    expect(t.producerHolds(s, 1050 + 101)).toBe(false); // danglingAfterMs (100) is longer than 2 × 50
    t.wroteAfterClose(s, 1050 + 400); // a producer that writes every 400 ms
    expect(s.afterCloseGap).toBe(400);
    expect(t.producerHolds(s, 1450 + 799)).toBe(true);
    expect(t.producerHolds(s, 1450 + 801)).toBe(false);
    t.stopSweep();
  });
});
