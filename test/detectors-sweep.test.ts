import { describe, expect, it } from 'vitest';
import type http from 'node:http';
import { StreamState, type StreamConfig } from '../src/core/stream-state.js';
import { getTracker } from '../src/core/tracker.js';
import { MAX_FINDINGS_PER_SWEEP, sweep } from '../src/consumers/detectors/index.js';

// Unit test of the sweep's pure logic on tracker states (no sockets): a burst of findings is spread
// over sweeps, and each stream still gets each kind once.
describe('detector sweep', () => {
  it(`raises at most ${MAX_FINDINGS_PER_SWEEP} findings per sweep and the rest in the next sweeps`, () => {
    const tracker = getTracker();
    const config: StreamConfig = Object.freeze({
      stallAfterMs: 10,
      danglingAfterMs: 10,
      trackAsync: false,
      captureStacks: false,
      tracer: undefined,
      route: '/burst',
      metrics: null,
    });
    while (performance.now() < 50) {
      // busy-wait: the clock must be past the threshold
    }
    const n = MAX_FINDINGS_PER_SWEEP + 200;
    const states: StreamState[] = [];
    for (let i = 0; i < n; i++) {
      const s = new StreamState({ method: 'GET' } as http.IncomingMessage, { destroyed: true } as http.ServerResponse, config, 0);
      s.phase = 1;
      s.route = '/burst';
      s.blockedSince = 0; // blocked since the process started (stallAfterMs is 10)
      tracker.open.add(s);
      states.push(s);
    }
    const raised = (): number => states.filter((s) => s.findings.includes('stalled_write')).length;
    try {
      sweep();
      // the first sweep takes each stream's baseline: one sample shows no span without progress
      expect(raised()).toBe(0);
      const t = performance.now();
      while (performance.now() - t < 20) {
        // busy-wait: the next samples are more than stallAfterMs (10) after the baselines
      }
      sweep();
      expect(raised()).toBe(MAX_FINDINGS_PER_SWEEP);
      sweep();
      expect(raised()).toBe(n);
      sweep();
      expect(states.every((s) => s.findings.length === 1)).toBe(true);
    } finally {
      for (const s of states) tracker.open.delete(s);
    }
  });
});
