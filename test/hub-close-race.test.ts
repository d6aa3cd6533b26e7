import { afterEach, describe, expect, it, vi } from 'vitest';
import { createHub, memoryStore, type HubStore, type SseStream } from '../src/index.js';
import { get, newRegistry, scrape, sleep, startServer, sum, type TestServer } from './helpers/http.js';

// A subscribe that is still awaiting its store when hub.close() runs must not open a stream afterwards:
// no heartbeat interval left running, the shedder's count back to 0, no stream counted at all.

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  while (cleanups.length) await cleanups.pop()!();
});

/** A memory store whose first call of `step` waits until `release()`: the subscribe is held right there. */
function gatedStore(step: 'info' | 'follow'): { store: HubStore; entered: Promise<void>; release: () => void } {
  const inner = memoryStore();
  let release!: () => void;
  let enter!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const entered = new Promise<void>((r) => (enter = r));
  let first = true;
  const store: HubStore = {
    kind: 'gated',
    append: (c, e, d) => inner.append(c, e, d),
    range: (c, a, n) => inner.range(c, a, n),
    info: async (c) => {
      if (step === 'info' && first) {
        first = false;
        enter();
        await gate;
      }
      return inner.info(c);
    },
    follow: async (c, l) => {
      if (step === 'follow' && first) {
        first = false;
        enter();
        await gate;
      }
      return inner.follow(c, l);
    },
    close: () => inner.close(),
  };
  return { store, entered, release };
}

describe('hub.close() while a subscribe is awaiting its store', () => {
  for (const step of ['info', 'follow'] as const) {
    it(`held in store.${step}(): no stream opens, no interval is left, the shedder's count is 0, nothing is counted`, async () => {
      const registry = newRegistry();
      const { store, entered, release } = gatedStore(step);
      const hub = createHub({ store, registry, route: '/events', heartbeatMs: 20, shed: { maxStreams: 5 } });
      const intervals: unknown[] = [];
      const cleared = new Set<unknown>();
      const setI = globalThis.setInterval;
      const clearI = globalThis.clearInterval;
      vi.spyOn(globalThis, 'setInterval').mockImplementation(((fn: () => void, ms?: number) => {
        const t = setI(fn, ms);
        if (ms === 20) intervals.push(t); // the heartbeat's period (other intervals of the process are not this test's)
        return t;
      }) as typeof setInterval);
      vi.spyOn(globalThis, 'clearInterval').mockImplementation(((t: NodeJS.Timeout) => {
        cleared.add(t);
        clearI(t);
      }) as typeof clearInterval);
      let result: Promise<SseStream | null> | undefined;
      const srv: TestServer = await startServer((req, res) => {
        result = hub.subscribe(req, res, 'c');
      });
      cleanups.push(() => srv.close());
      const answer = get(`${srv.url}/events`);
      await entered;
      await hub.close();
      release();
      const stream = await result!;
      // the answer must come at once: a stream opened after close() would keep the request open for ever
      const r = await Promise.race([answer, sleep(3000).then(() => null)]);
      await sleep(60); // three heartbeat periods: a heartbeat left running would have fired by now
      // the route's shedder (src/runtime/limits): what a next subscribe on '/events' is admitted against
      const shedder = (hub as unknown as { resolved: { limits: { shed: { forRoute(r: string): { active: number } } } } }).resolved.limits.shed.forRoute('/events');
      const m = await scrape(registry);
      expect({
        subscribe: stream === null ? null : 'a stream',
        status: r === null ? 'no answer within 3 s' : r.status,
        code: r === null ? null : (JSON.parse(r.body.toString() || '{}') as { error?: { code?: string } }).error?.code,
        intervalsLeft: intervals.filter((t) => !cleared.has(t)).length,
        shedderActive: shedder.active,
        subscribers: hub.subscribers(),
        started: sum(m, 'stream_started_total'),
        closed: sum(m, 'stream_duration_seconds_count'),
        active: sum(m, 'stream_active_connections'),
      }).toEqual({
        subscribe: null,
        status: 503,
        code: 'STREAMSCOPE_ERR_HUB_CLOSED',
        intervalsLeft: 0,
        shedderActive: 0,
        subscribers: 0,
        started: 0,
        closed: 0,
        active: 0,
      });
    });
  }
});
