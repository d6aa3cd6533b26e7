import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createHub, redisStore, type Hub } from '../src/index.js';
import { connect, type ClientEvent, type SseClient } from '../src/client/index.js';
import { startServer, until, type TestServer } from './helpers/http.js';
import { hubApp } from './helpers/sse.js';
import { faultProxy } from './helpers/fault-proxy.js';
import { redisFaultHarness, type RedisServer } from './helpers/redis.js';

/**
 * Idempotent publish under the faults of test/redis-faults.test.ts: a real redis-server (AOF, fsync always, so
 * that what it acknowledged survives a SIGKILL) frozen with SIGSTOP, then killed and restarted, a serving
 * instance restarted and the publisher restarted mid-retry, under a publisher that retries every rejected
 * publish with its key until it succeeds. A publish that timed out may
 * have been stored after all (its script waited in the frozen server's socket, or ioredis resent it after the
 * reconnect); its retry must answer that event's id rather than store it again. Subscribers (streamscope/client,
 * cut once while Redis is down, so they also resume through 503s) must get every event exactly once, in order.
 */

let redis: RedisServer;
let admin: Redis;
const cleanups = redisFaultHarness(['--appendonly', 'yes', '--appendfsync', 'always'], (r, a) => {
  redis = r;
  admin = a;
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('hub.publish with a key: a retrying publisher stores each event once through Redis faults', () => {
  it('Redis frozen (SIGSTOP), killed and restarted, a serving instance and the publisher restarted: every subscriber gets every event exactly once, in order', async () => {
    const prefix = 'idem-faults:';
    const store = (): ReturnType<typeof redisStore> => redisStore({ url: redis.url, keyPrefix: prefix, commandTimeoutMs: 300, blockMs: 200 });
    /** One serving instance: a hub (its own store and connections) on its own server. */
    const instance = async (): Promise<{ hub: Hub; app: ReturnType<typeof hubApp>; srv: TestServer; stop: () => Promise<void> }> => {
      const hub = createHub({ store: store(), checksum: 'crc32', heartbeatMs: 0, retryMs: 50 });
      const app = hubApp(hub);
      const srv = await startServer(app.handler);
      let stopped = false;
      const stop = async (): Promise<void> => {
        if (stopped) return;
        stopped = true;
        app.cutAll();
        await hub.close();
        await srv.close();
      };
      cleanups.push(stop);
      return { hub, app, srv, stop };
    };
    const instances = [await instance(), await instance()];
    // subscribers reach the instances through a proxy that sends each connection to the next one
    const backends = instances.map((i) => i.srv.port);
    const proxy = await faultProxy(backends);
    cleanups.push(() => proxy.close());
    let publisher: Hub = createHub({ store: store() });
    cleanups.push(() => publisher.close());
    const subs = (): number => instances.reduce((n, i) => n + i.hub.subscribers('c'), 0);

    const subscribers = [0, 1].map(() => {
      const got: ClientEvent[] = [];
      const errors: string[] = [];
      const client: SseClient = connect(`${proxy.url}/events`, { lastEventId: '0-0', retryMs: 50, maxRetryMs: 500, onEvent: (e) => got.push(e), onError: (e) => errors.push(e.code) });
      cleanups.push(() => client.close());
      return { got, errors, client };
    });
    await until(() => subs() === 2, 'both subscribed');

    const N = 240;
    let rejected = 0;
    let published = 0;
    let restartPublisher = false;
    let publisherRestarts = 0;
    const publishing = (async () => {
      for (let i = 0; i < N; i++) {
        for (;;) {
          try {
            await publisher.publish('c', `e${i}`, { key: `k${i}` });
            break;
          } catch (err) {
            expect((err as { code?: string }).code).toBe('STREAMSCOPE_ERR_STORE');
            rejected++;
            if (restartPublisher) {
              // the publishing process restarts and retries its unacknowledged event with the same key
              restartPublisher = false;
              publisherRestarts++;
              const old = publisher;
              publisher = createHub({ store: store() });
              cleanups.push(() => publisher.close());
              await old.close();
            }
            await sleep(20);
          }
        }
        published = i + 1;
        await sleep(4);
      }
    })();

    await until(() => published >= 40, '40 published', 20_000, 5);
    restartPublisher = true; // at its first rejection, while its timed-out script waits in the frozen server
    redis.freeze();
    await sleep(1200);
    expect(instances[0]!.app.cutAll() + instances[1]!.app.cutAll()).toBe(2); // they resume while Redis is frozen: 503 until it answers
    await sleep(300);
    redis.thaw();
    await until(() => published >= 100, '100 published', 30_000, 5);
    await redis.restart(); // SIGKILL; the AOF keeps what was acknowledged, and the epoch
    await until(() => published >= 170, '170 published', 30_000, 5);
    // a serving instance (one that has a subscriber) restarts: its subscribers are cut and resume through the proxy
    const victim = instances[0]!.hub.subscribers('c') > 0 ? 0 : 1;
    expect(instances[victim]!.hub.subscribers('c')).toBeGreaterThan(0);
    await instances[victim]!.stop();
    instances[victim] = await instance();
    backends[victim] = instances[victim].srv.port;
    await publishing;

    for (const [k, s] of subscribers.entries()) {
      await until(() => s.got.length >= N, `subscriber ${k}: every event (has ${s.got.length})`, 30_000);
    }
    await sleep(300); // a duplicate would come after the last event
    for (const s of subscribers) {
      expect(s.got.map((e) => e.data)).toEqual(Array.from({ length: N }, (_, i) => `e${i}`));
      expect(new Set(s.got.map((e) => e.id)).size).toBe(N);
      expect(s.errors).toEqual([]);
    }
    expect(await admin.xlen(`${prefix}c`)).toBe(N);
    // the faults did reject publishes (each retried with its key); without keys the late-applied ones double
    expect(rejected).toBeGreaterThan(0);
    expect(publisherRestarts).toBe(1);
    console.log(`idempotent publish under faults: ${N} events, ${rejected} rejected publish calls retried, subscriber connections ${subscribers.map((s) => s.client.connections).join(', ')}`);
  });
});
