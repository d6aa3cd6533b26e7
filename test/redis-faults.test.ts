import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { compareIds, createHub, redisStore, type Hub, type RedisLike, type SubscribeOptions } from '../src/index.js';
import { get, newRegistry, scrape, startServer, sum, until, type TestServer } from './helpers/http.js';
import { hubApp, openSse } from './helpers/sse.js';
import { redisFaultHarness, type RedisServer } from './helpers/redis.js';

// A redis-server of its own: these tests flush, kill, restart and freeze it.
let redis: RedisServer;
let admin: Redis;
const cleanups = redisFaultHarness([], (r, a) => {
  redis = r;
  admin = a;
});

let prefixN = 0;
function newHub(extra: Parameters<typeof createHub>[0] = {}, storeOpts: Partial<Parameters<typeof redisStore>[0]> = {}): Hub {
  prefixN++;
  const hub = createHub({ store: redisStore({ url: redis.url, keyPrefix: `f${prefixN}:`, ...storeOpts }), heartbeatMs: 0, ...extra });
  cleanups.push(() => hub.close());
  return hub;
}

async function serve(hub: Hub, options?: SubscribeOptions): Promise<TestServer> {
  const srv = await startServer(hubApp(hub, options).handler);
  cleanups.push(() => srv.close());
  return srv;
}

async function publishN(hub: Hub, from: number, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = from; i < from + n; i++) ids.push(await hub.publish('c', String(i)));
  return ids;
}

/** Waits until Redis answers again (after a restart) through a client of its own. */
async function redisBack(): Promise<void> {
  await until(async () => (await admin.ping().catch(() => null)) === 'PONG', 'redis back', 20_000, 50);
}

const losses: Array<[string, () => Promise<void>]> = [
  ['FLUSHALL', async () => void (await admin.flushall())],
  [
    'a restart without persistence',
    async () => {
      await redis.restart();
      await redisBack();
    },
  ],
];

describe('redisStore: a resume across lost history is never a silent gap', () => {
  for (const [name, lose] of losses) {
    it(`${name}: an id from before gets 416 with X-Next-Cursor (not 200 with the events after the loss); the cursor resumes in the new epoch`, async () => {
      const registry = newRegistry();
      const hub = newHub({ registry, route: '/events' });
      const srv = await serve(hub);
      const seen = await publishN(hub, 1, 10); // the client saw 1-10, then went away
      await publishN(hub, 11, 10); // 11-20: published while it was away, then lost
      await lose();
      const after = await publishN(hub, 21, 10); // 21-30
      expect(after[0]!.split(':')[0]).not.toBe(seen[9]!.split(':')[0]); // a new epoch
      const r = await get(`${srv.url}/events?lastEventId=${seen[9]}`);
      expect(r.status).toBe(416);
      const body = JSON.parse(r.body.toString()) as { error: { code: string; nextCursor: string } };
      expect(body.error.code).toBe('STREAMSCOPE_ERR_UNKNOWN_EVENT_ID');
      const next = r.headers['x-next-cursor'] as string;
      expect(body.error.nextCursor).toBe(next);
      // from the cursor: everything the store still has, once and in order
      const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': next });
      await until(() => c.events.length === 10, 'the retained events');
      expect(c.events.map((e) => e.id)).toEqual(after);
      expect(c.events.map((e) => e.data)).toEqual(after.map((_, i) => String(21 + i)));
      c.close();
      const m = await scrape(registry);
      expect(sum(m, 'stream_resumes_total', { route: '/events', result: 'expired' })).toBe(1);
    });

    it(`${name} while a resume's replay page is in flight: the page comes back empty from the new history, and the live events held meanwhile are not sent after the hole`, async () => {
      // The command connection is a real ioredis client; only the replay's XRANGE script is held, so that the
      // loss lands between the resume's start and its first page, with live events of the old history queued.
      const real = new Redis(redis.url, { maxRetriesPerRequest: 3 });
      real.on('error', () => {});
      cleanups.push(() => real.disconnect());
      let holdNext = false;
      let release: (() => void) | null = null;
      const client: RedisLike = {
        call: async (command, ...args) => {
          if (holdNext && command === 'EVAL' && String(args[0]).includes("'XRANGE'")) {
            holdNext = false;
            await new Promise<void>((r) => (release = r));
          }
          return real.call(command, ...args);
        },
        duplicate: () => real.duplicate(),
        quit: () => real.quit(),
        disconnect: () => real.disconnect(),
        on: (event, listener) => real.on(event, listener),
      };
      const hub = newHub({}, { client });
      const srv = await serve(hub);
      const acked = await publishN(hub, 1, 10);
      const watcher = await openSse(`${srv.url}/events`); // keeps the channel followed; sees what the live reader delivers
      await until(() => hub.subscribers('c') === 1, 'the watcher subscribed');
      holdNext = true;
      const r = await openSse(`${srv.url}/events`, { 'Last-Event-ID': acked[4]! });
      await until(() => release !== null, "the resume's first page held");
      acked.push(...(await publishN(hub, 11, 2))); // live events of the old history, queued for the resume
      await until(() => watcher.events.length === 2, 'the live reader delivered them');
      await lose();
      release!();
      await publishN(hub, 13, 1); // of the new history: a stream that went live on the old one ends on it
      await r.ended;
      // every event the resume got is the next acknowledged one after its Last-Event-ID (before the fix: 11, 12)
      const got = r.events.map((e) => e.id);
      expect(got).toEqual(acked.slice(5, 5 + got.length));
      const again = await get(`${srv.url}/events?lastEventId=${got.at(-1) ?? acked[4]}`);
      expect(again.status).toBe(416);
      watcher.close();
    });

    it(`${name}: with onExpired 'reset' the resume opens with a reset event, then live events`, async () => {
      const hub = newHub({ onExpired: 'reset' });
      const srv = await serve(hub);
      const seen = await publishN(hub, 1, 10);
      await publishN(hub, 11, 10);
      await lose();
      const after = await publishN(hub, 21, 10);
      const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': seen[9]! });
      expect(c.status).toBe(200);
      await until(() => c.events.length >= 1, 'the reset event');
      const reset = c.events[0]!;
      expect(reset.event).toBe('reset');
      expect(reset.id).toBe(after[9]);
      const data = JSON.parse(reset.data) as { reason: string; lastEventId: string; nextCursor: string };
      expect(data.reason).toBe('unknown');
      expect(data.lastEventId).toBe(seen[9]);
      const live = await publishN(hub, 31, 3);
      await until(() => c.events.length === 4, 'live events after the reset');
      expect(c.events.slice(1).map((e) => e.id)).toEqual(live);
      c.close();
    });
  }

  it('a live subscriber across a FLUSHALL: its stream ends, and its resume gets 416 (nothing published after the flush is passed off as the continuation)', async () => {
    const hub = newHub();
    const srv = await serve(hub);
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': '0-0' });
    await until(() => hub.subscribers('c') === 1, 'subscribed');
    const before = await publishN(hub, 1, 5);
    await until(() => c.events.length === 5, 'live events');
    await admin.flushall();
    await publishN(hub, 6, 3);
    await c.ended;
    expect(c.events.map((e) => e.id)).toEqual(before);
    const r = await get(`${srv.url}/events?lastEventId=${before[4]}`);
    expect(r.status).toBe(416);
  });

  it('a restart with persistence keeps the epoch: the resume replays what was missed, once and in order', async () => {
    const hub = newHub();
    const srv = await serve(hub);
    const seen = await publishN(hub, 1, 10);
    const missed = await publishN(hub, 11, 10);
    await redis.restart({ persist: true, save: () => admin.save() });
    await redisBack();
    const more = await publishN(hub, 21, 5);
    expect(more[0]!.split(':')[0]).toBe(seen[0]!.split(':')[0]);
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': seen[9]! });
    expect(c.status).toBe(200);
    await until(() => c.events.length === 15, 'the replay');
    expect(c.events.map((e) => e.id)).toEqual([...missed, ...more]);
    c.close();
  });
});

describe('redisStore: a frozen Redis (SIGSTOP) does not hang publish() or subscribe()', () => {
  it('publish rejects with STREAMSCOPE_ERR_STORE within the deadline, subscribe answers 503; after SIGCONT both work again', async () => {
    const timeout = 500;
    const hub = newHub({}, { commandTimeoutMs: timeout });
    const srv = await serve(hub);
    // a subscriber that is live before the freeze
    const live = await openSse(`${srv.url}/events`, { 'Last-Event-ID': '0-0' });
    await until(() => hub.subscribers('c') === 1, 'subscribed');
    const first = await hub.publish('c', 'before');
    await until(() => live.events.length === 1, 'first event');

    redis.freeze();
    const t0 = Date.now();
    const err = (await hub.publish('c', 'while frozen').then(
      () => null,
      (e: unknown) => e,
    )) as { code?: string; message?: string } | null;
    const took = Date.now() - t0;
    expect(err?.code).toBe('STREAMSCOPE_ERR_STORE');
    expect(err?.message).toMatch(/timed out/);
    // the deadline plus generous slack for a loaded machine; without a deadline this waits for SIGCONT
    expect(took).toBeLessThan(timeout + 4000);
    for (const query of ['', `?lastEventId=${first}`]) {
      const r = await get(`${srv.url}/events${query}`);
      expect(r.status).toBe(503);
      expect((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code).toBe('STREAMSCOPE_ERR_STORE');
    }
    redis.thaw();

    // the hub recovers: publish resolves, the live subscriber gets new events, a new subscriber replays
    const id = await hub.publish('c', 'after');
    await until(() => live.events.some((e) => e.id === id), 'the live subscriber gets events again', 20_000);
    const c = await openSse(`${srv.url}/events`, { 'Last-Event-ID': first });
    expect(c.status).toBe(200);
    await until(() => c.events.some((e) => e.id === id), 'a new subscriber replays');
    // nothing twice, and in order, for the subscriber that lived through the freeze
    const ids = live.events.map((e) => e.id as string);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort(compareIds)).toEqual(ids);
    c.close();
    live.close();
  });
});
