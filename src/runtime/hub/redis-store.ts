import { invalidOption, StreamscopeError } from '../../errors.js';
import { getTracker } from '../../core/tracker.js';
import { compareIds, newEpoch, withEpoch, ZERO_ID } from './ids.js';
import type { ChannelInfo, HubStore, RangePage, StoredEvent } from './store.js';
import type { RedisStore as PublicRedisStore } from './public.js';
import { KEY_WINDOW_MS } from './memory-store.js';

/** The part of an ioredis client this store uses (so ioredis stays an optional peer dependency). */
export interface RedisLike {
  call(command: string, ...args: Array<string | number>): Promise<unknown>;
  duplicate(): RedisLike;
  quit(): Promise<unknown>;
  disconnect(): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

export interface RedisStoreOptions {
  /** redis:// URL; the store opens (and closes) its own connections. */
  url?: string;
  /** An ioredis client to use for commands; the blocking reader is its `duplicate()`. Not closed by the store. */
  client?: RedisLike;
  /** Approximate events kept per channel: `XADD … MAXLEN ~ maxLen` (default 10000). */
  maxLen?: number;
  /** Key prefix of the Redis streams (default `streamscope:`). */
  keyPrefix?: string;
  /** How long one XREAD blocks before it looks for new channels again, ms (default 1000). */
  blockMs?: number;
  /**
   * Deadline of every Redis command, ms (default 2000; the blocking XREAD gets `blockMs` more). Past it the
   * call rejects with STREAMSCOPE_ERR_STORE: `publish()` rejects, `subscribe()` answers 503.
   */
  commandTimeoutMs?: number;
  /** How long a publish key is remembered, ms: a publish with the same key within it is not stored again (default 600000). */
  keyWindowMs?: number;
}

/*
 * The epoch lives in Redis itself, at the key `<keyPrefix>` (no channel key is that short). Every script
 * creates it when it is absent, atomically with what it reads or writes, so a flush or a restart without
 * persistence — which lose it with the streams — makes the next command start a new epoch, and ids of the
 * old one are recognised. Each entry also carries its epoch (field `x`), so the live reader labels what it
 * reads without another round trip.
 */
const EPOCH_GET = "local e = redis.call('GET', KEYS[2]) if not e then e = ARGV[1] redis.call('SET', KEYS[2], e) end ";
const APPEND_SCRIPT =
  EPOCH_GET +
  "local a = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'x', e} for i = 3, #ARGV do a[#a + 1] = ARGV[i] end " +
  'return {e, redis.call(unpack(a))}';
/*
 * An idempotent append: the key's entry (KEYS[3], `<keyPrefix>\0k\0<channel>\0<key>`: no channel key has a NUL)
 * holds the id stored under it, for `keyWindowMs`. The check, the XADD and the SET run in one script, so two
 * publishes with one key store one event however they interleave, and a publish retried after a timeout
 * whose XADD was applied after all gets that event's id. An id of another epoch (the epoch key was lost
 * without the entry) does not count.
 */
const APPEND_ONCE_SCRIPT =
  EPOCH_GET +
  "local p = redis.call('GET', KEYS[3]) if p and string.sub(p, 1, #e + 1) == e .. ':' then return {e, p} end " +
  "local a = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'x', e} for i = 4, #ARGV do a[#a + 1] = ARGV[i] end " +
  "local id = e .. ':' .. redis.call(unpack(a)) redis.call('SET', KEYS[3], id, 'PX', ARGV[3]) return {e, id}";
const RANGE_SCRIPT = EPOCH_GET + "return {e, redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', ARGV[3])}";
const INFO_SCRIPT = EPOCH_GET + "local r = redis.pcall('XINFO', 'STREAM', KEYS[1]) if r.err then return {e, false} end return {e, r}";

const tracker = getTracker();

async function loadIoredis(): Promise<new (url: string, opts: Record<string, unknown>) => RedisLike> {
  try {
    const m = (await import('ioredis')) as unknown as { default?: unknown; Redis?: unknown };
    const Ctor = (m.Redis ?? m.default) as new (url: string, opts: Record<string, unknown>) => RedisLike;
    if (typeof Ctor !== 'function') throw new Error('ioredis exports no Redis class');
    return Ctor;
  } catch (err) {
    throw new StreamscopeError('STREAMSCOPE_ERR_REDIS_MISSING', undefined, { cause: err });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** An entry as an event; `epoch` labels an entry written before epochs (no field `x`). */
function toEvent(streamId: string, fields: unknown, epoch: string): StoredEvent {
  let event: string | undefined;
  let data = '';
  let x = epoch;
  if (Array.isArray(fields)) {
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const k = String(fields[i]);
      if (k === 'd') data = String(fields[i + 1]);
      else if (k === 'e') event = String(fields[i + 1]);
      else if (k === 'x') x = String(fields[i + 1]);
    }
  }
  return { id: withEpoch(x, streamId), epoch: x, event, data };
}

function toEvents(entries: unknown, epoch: string): StoredEvent[] {
  if (!Array.isArray(entries)) return [];
  return entries.map((e) => toEvent(String((e as unknown[])[0]), (e as unknown[])[1], epoch));
}

function streamPart(id: string): string {
  const i = id.indexOf(':');
  return i < 0 ? id : id.slice(i + 1);
}

/** Any failure of a Redis command, as the hub's users see it: STREAMSCOPE_ERR_STORE with the cause. */
function storeError(err: unknown, what: string): StreamscopeError {
  if (err instanceof StreamscopeError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new StreamscopeError('STREAMSCOPE_ERR_STORE', `redis ${what} failed: ${msg}`, { cause: err });
}

/**
 * Settles with `p`, or rejects with STREAMSCOPE_ERR_STORE after `ms`. A late reply or failure of `p`
 * is absorbed (the command may still run on the server: a timed-out XADD can be stored after all).
 */
function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new StreamscopeError('STREAMSCOPE_ERR_STORE', `redis ${what} timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(storeError(err, what));
      },
    );
  });
}

/**
 * Redis Streams: one stream per channel (`XADD … MAXLEN ~`), `XRANGE` to replay, and for live events
 * one dedicated connection per store that runs a single blocking `XREAD` over every channel this
 * instance follows and fans out to the local listeners — two connections per instance, however many
 * subscribers. Event ids are the Redis stream ids, so a client resumes on any instance.
 */
export class RedisStore implements HubStore {
  readonly kind = 'redis';
  readonly maxLen: number;
  readonly prefix: string;
  private readonly blockMs: number;
  readonly commandTimeoutMs: number;
  readonly keyWindowMs: number;
  /** The last epoch a script reported (labels entries written before epochs, which carry none). */
  private epoch = newEpoch();
  private readonly url: string | undefined;
  private readonly given: RedisLike | undefined;
  private cmd: Promise<RedisLike> | null = null;
  private reader: RedisLike | null = null;
  private readerId: string | null = null;
  private readonly cursors = new Map<string, string>();
  private readonly listeners = new Map<string, Set<(ev: StoredEvent) => void>>();
  private looping = false;
  private wake: (() => void) | null = null;
  private closed = false;

  constructor(options: RedisStoreOptions) {
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'an object', options);
    if (options.url === undefined && options.client === undefined) throw invalidOption('url', 'a redis:// URL (or pass client)', undefined);
    if (options.url !== undefined && typeof options.url !== 'string') throw invalidOption('url', 'a string', options.url);
    if (options.client !== undefined && (typeof options.client !== 'object' || typeof options.client?.call !== 'function')) {
      throw invalidOption('client', 'an ioredis client', options.client);
    }
    const maxLen = options.maxLen ?? 10000;
    if (!Number.isInteger(maxLen) || maxLen < 1) throw invalidOption('maxLen', 'a positive integer', maxLen);
    const blockMs = options.blockMs ?? 1000;
    if (!Number.isInteger(blockMs) || blockMs < 1) throw invalidOption('blockMs', 'a positive integer', blockMs);
    const timeout = options.commandTimeoutMs ?? 2000;
    if (!Number.isInteger(timeout) || timeout < 1) throw invalidOption('commandTimeoutMs', 'a positive integer', timeout);
    const keyWindowMs = options.keyWindowMs ?? KEY_WINDOW_MS;
    if (!Number.isInteger(keyWindowMs) || keyWindowMs < 1) throw invalidOption('keyWindowMs', 'a positive integer', keyWindowMs);
    this.keyWindowMs = keyWindowMs;
    this.maxLen = maxLen;
    this.blockMs = blockMs;
    this.commandTimeoutMs = timeout;
    this.prefix = options.keyPrefix ?? 'streamscope:';
    this.url = options.url;
    this.given = options.client;
  }

  /** The command connection, opened on first use (ioredis is imported then). */
  private conn(): Promise<RedisLike> {
    if (this.closed) return Promise.reject(new StreamscopeError('STREAMSCOPE_ERR_HUB_CLOSED'));
    if (this.cmd === null) {
      this.cmd = (async () => {
        if (this.given !== undefined) return this.given;
        const Redis = await loadIoredis();
        // Commands fail after a few reconnection attempts (the hub answers 503) rather than hang a request.
        const c = new Redis(this.url as string, { maxRetriesPerRequest: 3, enableAutoPipelining: true });
        c.on('error', (err) => tracker.fault('redis', err));
        return c;
      })();
      this.cmd.catch(() => {
        this.cmd = null;
      });
    }
    return this.cmd;
  }

  private key(channel: string): string {
    return this.prefix + channel;
  }

  /** One command on the command connection, within the deadline. */
  private async call(command: string, ...args: Array<string | number>): Promise<unknown> {
    const c = await deadline(this.conn(), this.commandTimeoutMs, 'connect');
    return deadline(c.call(command, ...args), this.commandTimeoutMs, command);
  }

  /** A script that reads the epoch (creating it when absent) with what it does; resolves to [epoch, reply]. */
  private async script(body: string, channel: string, ...args: Array<string | number>): Promise<[string, unknown]> {
    const r = (await this.call('EVAL', body, 2, this.key(channel), this.prefix, newEpoch(), ...args)) as unknown[];
    const epoch = String(r[0]);
    this.epoch = epoch;
    return [epoch, r[1]];
  }

  async append(channel: string, event: string | undefined, data: string): Promise<string> {
    const args: Array<string | number> = [this.maxLen];
    if (event !== undefined) args.push('e', event);
    args.push('d', data);
    const [epoch, id] = await this.script(APPEND_SCRIPT, channel, ...args);
    return withEpoch(epoch, String(id));
  }

  async appendOnce(channel: string, event: string | undefined, data: string, key: string): Promise<string> {
    const args: Array<string | number> = [newEpoch(), this.maxLen, this.keyWindowMs];
    if (event !== undefined) args.push('e', event);
    args.push('d', data);
    const r = (await this.call('EVAL', APPEND_ONCE_SCRIPT, 3, this.key(channel), this.prefix, this.prefix + '\0k\0' + channel + '\0' + key, ...args)) as unknown[];
    this.epoch = String(r[0]);
    return String(r[1]);
  }

  async range(channel: string, after: string, count: number): Promise<RangePage> {
    const [epoch, entries] = await this.script(RANGE_SCRIPT, channel, streamPart(after), count);
    return { epoch, events: toEvents(entries, epoch) };
  }

  async info(channel: string): Promise<ChannelInfo> {
    const [epoch, reply] = await this.script(INFO_SCRIPT, channel);
    if (!Array.isArray(reply)) return { epoch, first: null, last: withEpoch(epoch, ZERO_ID), trimmed: false };
    const f = new Map<string, unknown>();
    for (let i = 0; i + 1 < reply.length; i += 2) f.set(String(reply[i]), reply[i + 1]);
    const length = Number(f.get('length'));
    const added = Number(f.get('entries-added') ?? length);
    const firstEntry = f.get('first-entry') as unknown[] | null;
    return {
      epoch,
      first: Array.isArray(firstEntry) ? withEpoch(epoch, String(firstEntry[0])) : null,
      last: withEpoch(epoch, String(f.get('last-generated-id') ?? ZERO_ID)),
      trimmed: added > length,
    };
  }

  async follow(channel: string, listener: (ev: StoredEvent) => void): Promise<() => void> {
    let set = this.listeners.get(channel);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    set.add(listener);
    const unfollow = (): void => {
      const s = this.listeners.get(channel);
      if (s === undefined) return;
      s.delete(listener);
      if (s.size === 0) {
        this.listeners.delete(channel);
        this.cursors.delete(channel);
      }
    };
    if (!this.cursors.has(channel)) {
      try {
        // Start after the current last entry: anything appended later reaches the listener; anything
        // before is in the stream for XRANGE, which the hub runs only after this resolves.
        const last = (await this.call('XREVRANGE', this.key(channel), '+', '-', 'COUNT', 1)) as unknown[];
        const start = Array.isArray(last) && last.length > 0 ? String((last[0] as unknown[])[0]) : ZERO_ID;
        if (this.listeners.get(channel) === set && !this.cursors.has(channel)) this.cursors.set(channel, start);
      } catch (err) {
        unfollow();
        throw err;
      }
      this.kick();
    }
    return unfollow;
  }

  /** Makes the reader pick up a new channel now rather than at the end of its current block. */
  private kick(): void {
    if (!this.looping) {
      this.looping = true;
      void this.loop();
      return;
    }
    if (this.wake !== null) {
      const w = this.wake;
      this.wake = null;
      w();
      return;
    }
    const id = this.readerId;
    if (id !== null) {
      this.call('CLIENT', 'UNBLOCK', id).catch((err) => tracker.fault('redis', err));
    }
  }

  private async ensureReader(): Promise<RedisLike> {
    if (this.reader !== null) return this.reader;
    const c = await deadline(this.conn(), this.commandTimeoutMs, 'connect');
    const r = c.duplicate();
    r.on('error', (err) => tracker.fault('redis', err));
    r.on('close', () => {
      this.readerId = null;
    });
    this.reader = r;
    return r;
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      if (this.cursors.size === 0) {
        await new Promise<void>((r) => {
          this.wake = r;
        });
        continue;
      }
      let reply: unknown;
      let reader: RedisLike | null = null;
      try {
        const r = await this.ensureReader();
        reader = r;
        if (this.readerId === null) this.readerId = String(await deadline(r.call('CLIENT', 'ID'), this.commandTimeoutMs, 'CLIENT ID'));
        const keys: string[] = [];
        const ids: string[] = [];
        for (const [ch, id] of this.cursors) {
          keys.push(this.key(ch));
          ids.push(id);
        }
        reply = await deadline(r.call('XREAD', 'COUNT', 1000, 'BLOCK', this.blockMs, 'STREAMS', ...keys, ...ids), this.blockMs + this.commandTimeoutMs, 'XREAD');
      } catch (err) {
        if (this.closed) break;
        tracker.fault('redis', err);
        // A reader whose reply is overdue (Redis frozen, a half-open connection) is in an unknown state:
        // a new one starts from the same cursors.
        if (reader !== null && this.reader === reader) {
          this.reader = null;
          this.readerId = null;
          reader.disconnect();
        }
        await sleep(100);
        continue;
      }
      if (!Array.isArray(reply)) continue;
      for (const entry of reply as Array<[unknown, unknown]>) {
        const channel = String(entry[0]).slice(this.prefix.length);
        if (!this.cursors.has(channel)) continue;
        // An XREAD issued before the channel was dropped and followed again may return entries at or
        // before the new start: drop them, so each event reaches the listeners once and in order.
        const cursor = this.cursors.get(channel) as string;
        const events = toEvents(entry[1], this.epoch).filter((ev) => compareIds(ev.id, cursor) > 0);
        if (events.length === 0) continue;
        this.cursors.set(channel, streamPart((events[events.length - 1] as StoredEvent).id));
        const set = this.listeners.get(channel);
        if (set === undefined) continue;
        for (const ev of events) {
          for (const l of set) {
            try {
              l(ev);
            } catch (err) {
              tracker.fault('hub', err);
            }
          }
        }
      }
    }
    this.looping = false;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.cursors.clear();
    if (this.wake !== null) this.wake();
    const reader = this.reader;
    this.reader = null;
    if (reader !== null) reader.disconnect();
    const cmd = this.cmd;
    this.cmd = null;
    if (cmd !== null && this.given === undefined) {
      try {
        const c = await cmd;
        c.disconnect();
      } catch {
        /* already gone */
      }
    }
  }
}

export function redisStore(options: RedisStoreOptions): PublicRedisStore {
  return new RedisStore(options);
}
