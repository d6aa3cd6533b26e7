import { describe, expect, it } from 'vitest';
import { MAX_STEP_STALL, Progress, STEP_ALLOWANCE, isStalled, record } from '../src/consumers/detectors/progress.js';
import type { StreamState } from '../src/core/stream-state.js';

/**
 * The one "stalled" rule (pure): no progress in the samples for longer than stallAfterMs, or, for a client seen
 * taking bytes in steps, STEP_ALLOWANCE × its last step interval, capped at MAX_STEP_STALL × stallAfterMs.
 */

const STALL = 2000;
const BLOCKED = 1000; // performance.now() when the write blocked

function blocked(): { s: StreamState; p: Progress } {
  const p = new Progress();
  p.episode = BLOCKED;
  // the fields the rule reads; the progress record is in the progress module's slot (StreamState.slot)
  const s = { blockedSince: BLOCKED, config: { stallAfterMs: STALL }, slot: () => p } as unknown as StreamState;
  return { s, p };
}

describe('isStalled', () => {
  it('a client never seen taking a byte is stalled just after stallAfterMs, not before', () => {
    const { s, p } = blocked();
    record(p, 100, BLOCKED + 200); // the baseline sample
    record(p, 100, BLOCKED + STALL);
    expect(isStalled(s, 0)).toBe(false);
    record(p, 100, BLOCKED + STALL + 1);
    expect(isStalled(s, 0)).toBe(true);
  });

  it('without a sample of this episode there is no evidence, so no stall', () => {
    const { s, p } = blocked();
    expect(isStalled(s, 0)).toBe(false);
    record(p, 0, BLOCKED + 10 * STALL);
    p.episode = BLOCKED - 1; // the samples belong to an earlier blocked episode
    expect(isStalled(s, 0)).toBe(false);
  });

  it('progress restarts the clock: a slow reader taking bytes every stallAfterMs / 2 is never stalled', () => {
    const { s, p } = blocked();
    let delivered = 0;
    for (let t = BLOCKED + 200; t < BLOCKED + 20 * STALL; t += STALL / 4) {
      if ((t - BLOCKED - 200) % (STALL / 2) === 0) delivered += 65536;
      record(p, delivered, t);
      expect(isStalled(s, 0), `at +${t - BLOCKED} ms`).toBe(false);
    }
  });

  it('a client stepping every 2.7 s is given STEP_ALLOWANCE × 2.7 s, capped at MAX_STEP_STALL × stallAfterMs', () => {
    const { s, p } = blocked();
    const gap = 2700;
    let at = BLOCKED + 200;
    record(p, 0, at);
    // two steps 2.7 s apart: the step interval is learnt
    record(p, 300_000, (at += gap));
    record(p, 600_000, (at += gap));
    expect(p.stepGap).toBe(gap);
    const limit = Math.min(STEP_ALLOWANCE * gap, MAX_STEP_STALL * STALL);
    expect(limit).toBeGreaterThan(STALL); // the allowance matters for this client
    // no step for longer than stallAfterMs but within the allowance: still reading
    record(p, 600_000, at + STALL + 1);
    expect(isStalled(s, 0)).toBe(false);
    record(p, 600_000, at + limit);
    expect(isStalled(s, 0)).toBe(false);
    // past the allowance: stalled
    record(p, 600_000, at + limit + 1);
    expect(isStalled(s, 0)).toBe(true);
  });

  it('a very slow stepper never gets more than MAX_STEP_STALL × stallAfterMs', () => {
    const { s, p } = blocked();
    let at = BLOCKED + 200;
    record(p, 0, at);
    record(p, 1, (at += 10 * STALL));
    record(p, 2, (at += 10 * STALL));
    expect(p.stepGap).toBe(10 * STALL);
    record(p, 2, at + MAX_STEP_STALL * STALL);
    expect(isStalled(s, 0)).toBe(false);
    record(p, 2, at + MAX_STEP_STALL * STALL + 1);
    expect(isStalled(s, 0)).toBe(true);
  });
});
