import { describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamState, type StreamConfig } from '../src/core/stream-state.js';
import { getTracker } from '../src/core/tracker.js';
import { installAsyncContext, runInStream } from '../src/consumers/detectors/async-tracking.js';

/**
 * trackAsync's list of a stream's resources (src/consumers/detectors/async-tracking.ts): an Immediate that already
 * ran is overwritten by the next one the stream creates, so that a handler awaiting a turn of the loop at each
 * write keeps one entry, not one per turn. An Immediate that has not run still holds the stream, whatever the
 * stream creates or clears after it.
 */

const config = { stallAfterMs: 100, danglingAfterMs: 100, trackAsync: true, captureStacks: false, tracer: undefined, route: undefined } as StreamConfig;

describe('trackAsync: the Immediates a stream created', () => {
  it('hold the stream until they ran: a pending one is kept when a later one is created and cleared', async () => {
    installAsyncContext();
    const tracker = getTracker();
    const s = new StreamState({ method: 'GET' } as IncomingMessage, {} as ServerResponse, config, performance.now());
    const held = (): number => tracker.asyncContext!.live(s);
    let ran = 0;
    runInStream(
      s,
      () => {
        setImmediate(() => void ran++);
        clearImmediate(setImmediate(() => {}));
      },
      undefined,
      [],
    );
    expect(held()).toBe(1);
    await new Promise((r) => setImmediate(r));
    expect(ran).toBe(1);
    expect(held()).toBe(0);
    // one that ran, then one that has not: the stream is held by the second
    runInStream(s, () => setImmediate(() => void ran++), undefined, []);
    await new Promise((r) => setImmediate(r));
    runInStream(s, () => setImmediate(() => void ran++), undefined, []);
    expect(held()).toBe(1);
    await new Promise((r) => setImmediate(r));
    expect(ran).toBe(3);
    expect(held()).toBe(0);
  });
});
