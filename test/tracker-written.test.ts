import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { getTracker } from '../src/core/tracker.js';
import { Phase, type StreamState } from '../src/core/stream-state.js';
import { get, serverPool } from './helpers/http.js';

/**
 * `tracker.written` (the streams written to since the last sweep) does not keep a released stream until the sweep
 * (src/core/tracker.ts `unwrite`): a short stream dies young instead of being copied and promoted by the garbage
 * collector (bench/core/notes.md). The sweep still sees every open stream that wrote.
 */

const serve = serverPool(afterEach);
const tracker = getTracker();

const listed = (s: StreamState): boolean => tracker.written.slice(0, tracker.writtenCount).includes(s);

describe('the written-to list and released streams', () => {
  it('a short stream leaves the list when it is released, not at the next sweep; an open one that wrote stays', async () => {
    const atRelease: boolean[] = [];
    let open: StreamState | undefined;
    const unsubscribe = tracker.subscribe({
      component: 'test-written',
      release(s) {
        if (s.route === '/short') atRelease.push(listed(s));
      },
    });
    try {
      let hold: () => void = () => {};
      const held = new Promise<void>((r) => (hold = r));
      const long = await serve(
        instrument(
          async (_req: http.IncomingMessage, res: http.ServerResponse) => {
            res.writeHead(200, { 'Content-Type': 'text/event-stream' });
            res.write('data: open\n\n');
            open = tracker.stateOf(res);
            await held;
            res.end();
          },
          { registry: new Registry(), route: '/long' },
        ),
      );
      const longDone = get(long.url);
      while (open === undefined) await new Promise((r) => setTimeout(r, 5));
      const short = await serve(
        instrument(
          async (_req: http.IncomingMessage, res: http.ServerResponse) => {
            res.writeHead(200, { 'Content-Type': 'text/event-stream' });
            for (let i = 0; i < 3; i++) {
              res.write(`data: ${i}\n\n`);
              await new Promise((r) => setImmediate(r));
            }
            res.end();
          },
          { registry: new Registry(), route: '/short' },
        ),
      );
      for (let i = 0; i < 8; i++) await get(short.url);
      while (atRelease.length < 8) await new Promise((r) => setTimeout(r, 5));
      expect(atRelease).toEqual(Array(8).fill(false));
      // the open stream is still looked at by the next sweep if it wrote since the last one
      const s = open as StreamState;
      expect(s.phase).toBe(Phase.Open);
      s.res?.write('data: again\n\n');
      expect(s.written).toBe(true);
      expect(listed(s)).toBe(true);
      hold();
      await longDone;
    } finally {
      unsubscribe();
    }
  });
});
