/**
 * The public face of the hub and its stores: what `createHub()`, `memoryStore()` and `redisStore()` return, without
 * the implementation's private state and internal paths (src/runtime/hub/*.ts). The classes are exported under
 * the same names (for `instanceof` and `new`, with the same options as the factories).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SseStream } from '../sse/public.js';
import type { HubEvent, HubOptions, PublishOptions, SubscribeOptions } from './hub.js';
import type { MemoryStoreOptions } from './memory-store.js';
import type { RedisStoreOptions } from './redis-store.js';
import type { HubStore } from './store.js';
import { Hub as HubClass } from './hub.js';
import { MemoryStore as MemoryStoreClass } from './memory-store.js';
import { RedisStore as RedisStoreClass } from './redis-store.js';

/**
 * Publish/subscribe with replay. `publish()` appends to the store and returns the event id;
 * `subscribe()` serves an SSE stream that replays what came after the client's Last-Event-ID, then
 * follows live events — each once, in order.
 */
export interface Hub {
  readonly store: HubStore;
  /**
   * Appends an event to a channel; resolves to its id. Throws STREAMSCOPE_ERR_INVALID_EVENT for a bad event type.
   * With `{ key }`, at most once per key and channel within the store's `keyWindowMs`: a retried publish answers
   * the first one's id (docs/hub.md, "Idempotent publish").
   */
  publish(channel: string, event: HubEvent | string, options?: PublishOptions): Promise<string>;
  /**
   * Serves `channel` as an SSE stream on `res`. Resolves to the stream, or to null when the request
   * was answered otherwise: 429/503 (limits), 400 (malformed Last-Event-ID), 416 (unknown or expired
   * id, with `X-Next-Cursor`). Never rejects for a client's doing; a failing store ends the stream with
   * an `error` event.
   */
  subscribe(req: IncomingMessage, res: ServerResponse, channel: string, options?: SubscribeOptions): Promise<SseStream | null>;
  /** Subscribers on this instance (all channels, or one). */
  subscribers(channel?: string): number;
  /** Ends every stream (outcome completed; clients reconnect elsewhere) and closes the store. */
  close(): Promise<void>;
}

/** The class of every `Hub`; `new Hub(options)` is `createHub(options)`. */
export const Hub: new (options?: HubOptions) => Hub = HubClass;

/**
 * The embedded store: per channel, a ring of the last `maxEvents` events in this process. Ids are
 * `<epoch ms>-<seq>`, the format of Redis stream ids, kept increasing when the clock steps back.
 * Replay survives reconnects but not a restart: each store has its own random epoch, so an id of an
 * earlier store gets 416 / `reset`.
 */
export interface MemoryStore extends HubStore {
  readonly kind: 'memory';
  /** Events kept per channel. */
  readonly maxEvents: number;
  /** Random per store: ids of another store (before a restart) are recognised as such. */
  readonly epoch: string;
}

/** The class of every `MemoryStore`; `new MemoryStore(options)` is `memoryStore(options)`. */
export const MemoryStore: new (options?: MemoryStoreOptions) => MemoryStore = MemoryStoreClass;

/**
 * Redis Streams: one stream per channel (`XADD … MAXLEN ~`), `XRANGE` to replay, and for live events
 * one dedicated connection per store that runs a single blocking `XREAD` over every channel this
 * instance follows and fans out to the local listeners — two connections per instance, however many
 * subscribers. Event ids are the Redis stream ids, so a client resumes on any instance.
 */
export interface RedisStore extends HubStore {
  readonly kind: 'redis';
  /** Approximate events kept per channel (`MAXLEN ~`). */
  readonly maxLen: number;
  /** Key prefix of the Redis streams. */
  readonly prefix: string;
  /** Deadline of every Redis command, ms. */
  readonly commandTimeoutMs: number;
}

/** The class of every `RedisStore`; `new RedisStore(options)` is `redisStore(options)`. */
export const RedisStore: new (options: RedisStoreOptions) => RedisStore = RedisStoreClass;
