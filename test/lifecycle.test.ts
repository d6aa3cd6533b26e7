import { describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { getTracker } from '../src/core/tracker.js';
import { getAndAbort, sleep, until } from './helpers/http.js';
import { testScope } from './helpers/scope.js';

/**
 * The release of a closed stream is decided by one rule, `producerHolds` (src/core/tracker.ts), wherever the
 * question comes up: at close, when the handler settles, on the sweep. A handler that settles after its
 * client left while a timer it created lives on still holds the stream: it lingers and is reported as
 * `dangling_async`, as it is when the handler settled before the close.
 */

const DANGLE = 500;
const { cleanup, serve, collect } = testScope();

const tracker = getTracker();
const lingering = (route: string): number => [...tracker.lingering.values()].filter((s) => s.route === route).length;

describe('a handler that settles after its client left', () => {
  it('with a timer it created still alive: the stream lingers and dangling_async is raised', async () => {
    const seen = collect('/late-settle');
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          // a poller that is never cleared and never writes
          const poll = setInterval(function pollUpstream() {}, 50);
          cleanup.push(() => clearInterval(poll));
          res.write('data: hello\n\n');
          await once(res, 'close');
        },
        { registry: new Registry(), route: '/late-settle', danglingAfterMs: DANGLE, trackAsync: true },
      ),
    );
    await getAndAbort(srv.url, 1);
    // the handler has settled (its promise resolved at close) and the stream is still held by its timer
    await until(() => lingering('/late-settle') === 1, 'the stream lingers', 5_000);
    await until(() => seen.some((f) => f.kind === 'dangling_async'), 'dangling_async', 10_000);
    const f = seen.find((x) => x.kind === 'dangling_async')!;
    expect(f.detail).toMatch(/1 Timeout/);
  });

  it('with its timers cleared: released, nothing raised', async () => {
    const seen = collect('/late-settle-tidy');
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          const poll = setInterval(function pollUpstream() {}, 50);
          res.write('data: hello\n\n');
          await once(res, 'close');
          clearInterval(poll);
        },
        { registry: new Registry(), route: '/late-settle-tidy', danglingAfterMs: DANGLE, trackAsync: true },
      ),
    );
    await getAndAbort(srv.url, 1);
    await until(() => lingering('/late-settle-tidy') === 0 && tracker.open.size === 0, 'the stream is released', 5_000);
    await sleep(DANGLE + 800);
    expect(seen).toEqual([]);
    expect(lingering('/late-settle-tidy')).toBe(0);
  });
});
