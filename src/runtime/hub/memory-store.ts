import { invalidOption } from '../../errors.js';
import { getTracker } from '../../core/tracker.js';
import { compareIds, newEpoch, withEpoch, ZERO_ID } from './ids.js';
import type { ChannelInfo, HubStore, RangePage, StoredEvent } from './store.js';
import type { MemoryStore as PublicMemoryStore } from './public.js';

export interface MemoryStoreOptions {
  /** Events kept per channel for replay; older ones are dropped (default 10000). */
  maxEvents?: number;
  /** How long a publish key is remembered, ms: a publish with the same key within it is not stored again (default 600000). */
  keyWindowMs?: number;
}

/** Default window of idempotent publish keys (both stores): 10 minutes. */
export const KEY_WINDOW_MS = 600_000;

const tracker = getTracker();

/** One channel: a ring of the last maxEvents events and the live listeners. */
class Channel {
  /** Grows to `cap` as events arrive, then wraps: an idle channel costs a few bytes, not `cap` slots. */
  readonly ring: StoredEvent[] = [];
  readonly cap: number;
  head = 0;
  size = 0;
  lastMs = 0;
  lastSeq = -1;
  last: string;
  trimmed = false;
  readonly listeners = new Set<(ev: StoredEvent) => void>();
  /** Publish keys seen within the window → the id stored under each, in the order they were stored. */
  keys: Map<string, { id: string; until: number }> | null = null;

  constructor(
    cap: number,
    readonly zero: string,
  ) {
    this.cap = cap;
    this.last = zero;
  }

  at(i: number): StoredEvent {
    return this.ring[(this.head + i) % this.ring.length] as StoredEvent;
  }

  push(ev: StoredEvent): void {
    if (this.size < this.cap) {
      this.ring.push(ev); // head stays 0 until the ring is full
      this.size++;
    } else {
      this.ring[this.head] = ev;
      this.head = (this.head + 1) % this.cap;
      this.trimmed = true;
    }
  }

  /** Index of the first event with id > after (binary search; ids increase). */
  firstAfter(after: string): number {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareIds(this.at(mid).id, after) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * The embedded store: per channel, a ring of the last `maxEvents` events in this process. Ids are
 * `<epoch ms>-<seq>`, the format of Redis stream ids, kept increasing when the clock steps back.
 * Replay survives reconnects but not a restart: each store has its own random epoch, so an id of an
 * earlier store gets 416 / `reset`.
 */
export class MemoryStore implements HubStore {
  readonly kind = 'memory';
  readonly maxEvents: number;
  readonly keyWindowMs: number;
  /** Random per store: ids of another store (before a restart) are recognised as such. */
  readonly epoch = newEpoch();
  private readonly zero = withEpoch(this.epoch, ZERO_ID);
  private readonly channels = new Map<string, Channel>();

  constructor(options: MemoryStoreOptions = {}) {
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'an object', options);
    const m = options.maxEvents ?? 10000;
    if (!Number.isInteger(m) || m < 1) throw invalidOption('maxEvents', 'a positive integer', m);
    this.maxEvents = m;
    const w = options.keyWindowMs ?? KEY_WINDOW_MS;
    if (!Number.isInteger(w) || w < 1) throw invalidOption('keyWindowMs', 'a positive integer', w);
    this.keyWindowMs = w;
  }

  private chan(name: string): Channel {
    let c = this.channels.get(name);
    if (c === undefined) {
      c = new Channel(this.maxEvents, this.zero);
      this.channels.set(name, c);
    }
    return c;
  }

  /** Synchronous append (the hub's publish uses it directly for the memory store). */
  appendSync(channel: string, event: string | undefined, data: string): string {
    const c = this.chan(channel);
    const now = Date.now();
    if (now > c.lastMs) {
      c.lastMs = now;
      c.lastSeq = 0;
    } else {
      c.lastSeq++;
    }
    const id = this.epoch + ':' + c.lastMs + '-' + c.lastSeq;
    c.last = id;
    const ev: StoredEvent = { id, epoch: this.epoch, event, data };
    c.push(ev);
    for (const l of c.listeners) {
      try {
        l(ev);
      } catch (err) {
        tracker.fault('hub', err);
      }
    }
    return id;
  }

  append(channel: string, event: string | undefined, data: string): Promise<string> {
    return Promise.resolve(this.appendSync(channel, event, data));
  }

  /** Synchronous idempotent append: an event with a key seen within `keyWindowMs` is not stored again; its first id answers. */
  appendOnceSync(channel: string, event: string | undefined, data: string, key: string): string {
    const c = this.chan(channel);
    const now = Date.now();
    const keys = (c.keys ??= new Map());
    // keys are stored in time order with one window: the expired ones are at the front
    for (const [k, v] of keys) {
      if (v.until > now) break;
      keys.delete(k);
    }
    const hit = keys.get(key);
    if (hit !== undefined) return hit.id;
    const id = this.appendSync(channel, event, data);
    keys.set(key, { id, until: now + this.keyWindowMs });
    return id;
  }

  appendOnce(channel: string, event: string | undefined, data: string, key: string): Promise<string> {
    return Promise.resolve(this.appendOnceSync(channel, event, data, key));
  }

  range(channel: string, after: string, count: number): Promise<RangePage> {
    const c = this.channels.get(channel);
    if (c === undefined) return Promise.resolve({ epoch: this.epoch, events: [] });
    const start = c.firstAfter(after);
    const end = Math.min(c.size, start + count);
    const out: StoredEvent[] = new Array(Math.max(0, end - start));
    for (let i = start; i < end; i++) out[i - start] = c.at(i);
    return Promise.resolve({ epoch: this.epoch, events: out });
  }

  info(channel: string): Promise<ChannelInfo> {
    const c = this.channels.get(channel);
    if (c === undefined || c.size === 0) return Promise.resolve({ epoch: this.epoch, first: null, last: c?.last ?? this.zero, trimmed: c?.trimmed ?? false });
    return Promise.resolve({ epoch: this.epoch, first: c.at(0).id, last: c.last, trimmed: c.trimmed });
  }

  follow(channel: string, listener: (ev: StoredEvent) => void): Promise<() => void> {
    const c = this.chan(channel);
    c.listeners.add(listener);
    return Promise.resolve(() => {
      c.listeners.delete(listener);
      // a channel that never held an event is forgotten with its last listener
      if (c.listeners.size === 0 && c.size === 0 && c.last === this.zero && c.keys === null && this.channels.get(channel) === c) this.channels.delete(channel);
    });
  }

  close(): Promise<void> {
    for (const c of this.channels.values()) c.listeners.clear();
    return Promise.resolve();
  }
}

export function memoryStore(options: MemoryStoreOptions = {}): PublicMemoryStore {
  return new MemoryStore(options);
}
