import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createHub, redisStore, type Hub } from '../src/index.js';
import { connect, type ClientEvent, type SseClient } from '../src/client/index.js';
import { startServer, until, type TestServer } from './helpers/http.js';
import { hubApp } from './helpers/sse.js';
import { startRedis, type RedisServer } from './helpers/redis.js';

/**
 * Idempotent publish under the faults of test/redis-faults.test.ts: a real redis-server (AOF, fsync always, so
 * that what it acknowledged survives a SIGKILL) frozen with SIGSTOP, then killed and restarted, under a
 * publisher that retries every rejected publish with its key until it succeeds. A publish that timed out may
 * have been stored after all (its script waited in the frozen server's socket, or ioredis resent it after the
 * reconnect); its retry must answer that event's id rather than store it again. Subscribers (streamscope/client,
 * cut once while Redis is down, so they also resume through 503s) must get every event exactly once, in order.
 */

let redis: RedisServer;
let admin: Redis;
const unhandled: unknown[] = [];
const onUnhandled = (err: unknown): void => void unhandled.push(err);
beforeAll(async () => {
  redis = await startRedis(['--appendonly', 'yes', '--appendfsync', 'always']);
  admin = new Redis(redis.url, { maxRetriesPerRequest: null });
  admin.on('error', () => {});
  process.on('unhandledRejection', onUnhandled);
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  admin?.disconnect();
  await redis?.stop();
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  redis.thaw();
  while (cleanups.length) await cleanups.pop()!();
  expect(unhandled).toEqual([]);
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('hub.publish with a key: a retrying publisher stores each event once through Redis faults', () => {
  it('Redis frozen (SIGSTOP), then killed and restarted: every subscriber gets every event exactly once, in order', async () => {
    const prefix = 'idem-faults:';
    const store = (): ReturnType<typeof redisStore> => redisStore({ url: redis.url, keyPrefix: prefix, commandTimeoutMs: 300, blockMs: 200 });
    // the serving instance and the publishing instance are two hubs (two stores, two connections) on one Redis
    const server: Hub = createHub({ store: store(), checksum: 'crc32', heartbeatMs: 0, retryMs: 50 });
    const publisher: Hub = createHub({ store: store() });
    cleanups.push(() => server.close(), () => publisher.close());
    const app = hubApp(server);
    const srv: TestServer = await startServer(app.handler);
    cleanups.push(() => srv.close());

    const subscribers = [0, 1].map(() => {
      const got: ClientEvent[] = [];
      const errors: string[] = [];
      const client: SseClient = connect(`${srv.url}/events`, { lastEventId: '0-0', retryMs: 50, maxRetryMs: 500, onEvent: (e) => got.push(e), onError: (e) => errors.push(e.code) });
      cleanups.push(() => client.close());
      return { got, errors, client };
    });
    await until(() => server.subscribers('c') === 2, 'both subscribed');

    const N = 240;
    let rejected = 0;
    let published = 0;
    const publishing = (async () => {
      for (let i = 0; i < N; i++) {
        for (;;) {
          try {
            await publisher.publish('c', `e${i}`, { key: `k${i}` });
            break;
          } catch (err) {
            expect((err as { code?: string }).code).toBe('STREAMSCOPE_ERR_STORE');
            rejected++;
            await sleep(20);
          }
        }
        published = i + 1;
        await sleep(4);
      }
    })();

    await until(() => published >= 40, '40 published', 20_000, 5);
    redis.freeze();
    await sleep(1200);
    expect(app.cutAll()).toBe(2); // the subscribers resume while Redis is frozen: 503 until it answers
    await sleep(300);
    redis.thaw();
    await until(() => published >= 120, '120 published', 30_000, 5);
    await redis.restart(); // SIGKILL; the AOF keeps what was acknowledged, and the epoch
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
    console.log(`idempotent publish under faults: ${N} events, ${rejected} rejected publish calls retried`);
  });
});
