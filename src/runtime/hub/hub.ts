import type { IncomingMessage, ServerResponse } from 'node:http';
import { format, httpError, invalidOption, StreamscopeError, type RegistryCode } from '../../errors.js';
import { getTracker } from '../../core/tracker.js';
import { routeMetricsOf } from '../../consumers/metrics.js';
import { admit, routeOf } from '../limits/index.js';
import { resolveSse, type ResolvedSse, type SseOptions } from '../sse/options.js';
import { dataText, encodeEvent } from '../sse/encoder.js';
import { ANCHOR_COMMENT } from '../sse/wire.js';
import { kOnClose, kOpen, kPush, kState, SseStream } from '../sse/stream.js';
import { compareIds, epochOf, predecessor, readLastEventId, streamIdOf, withEpoch, ZERO_ID } from './ids.js';
import { MemoryStore } from './memory-store.js';
import type { HubStore } from './store.js';
import { catchUp, Fanout, Sub } from './fanout.js';
import type { Hub as PublicHub } from './public.js';

const tracker = getTracker();

/** What `publish()` takes: an event type (optional) and data (a string, or anything JSON). */
export interface HubEvent {
  event?: string;
  data?: unknown;
}

/** Options of one `publish()`. */
export interface PublishOptions {
  /**
   * Idempotency key: the event is stored at most once per key and channel within the store's `keyWindowMs`
   * (default 10 minutes); a publish retried with the same key resolves to the first one's id. 1-256
   * characters, no NUL.
   */
  key?: string;
}

const KEY = /^[^\0]{1,256}$/;

export interface SubscribeOptions extends SseOptions {
  /** Unknown or expired Last-Event-ID: `'status'` answers 416 with `X-Next-Cursor` (default); `'reset'` opens the stream with a `reset` event. */
  onExpired?: 'status' | 'reset';
}

export interface HubOptions extends SubscribeOptions {
  /** Default: memoryStore(). */
  store?: HubStore;
  /**
   * Live events held per subscriber while it replays (default 10000). Past this they are dropped
   * and read again from the store once the replay is done, so memory stays bounded and nothing is lost.
   */
  maxPendingEvents?: number;
}

/** Live events held per subscriber while it replays; past this it replays again instead. */
const MAX_PENDING = 10000;

const CHANNEL = /^[^\r\n\0]{1,256}$/;

/** An error answer of the registry (src/errors.ts): its status and the body `{ error: { code, message, ...extra } }`. */
function answer(res: ServerResponse, code: RegistryCode, message?: string, headers: Record<string, string> = {}, extra?: Record<string, unknown>): void {
  try {
    if (res.headersSent || res.destroyed) return;
    const { status, body: text } = httpError(code, message, extra);
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
      'Cache-Control': 'no-store',
      ...headers,
    });
    res.end(text);
  } catch (err) {
    tracker.fault('hub', err);
  }
}

/**
 * Publish/subscribe with replay. `publish()` appends to the store and returns the event id;
 * `subscribe()` serves an SSE stream that replays what came after the client's Last-Event-ID, then
 * follows live events — each once, in order.
 */
export class Hub {
  readonly store: HubStore;
  private readonly options: SubscribeOptions;
  private readonly resolved: ResolvedSse;
  private readonly onExpired: 'status' | 'reset';
  private readonly perCall = new WeakMap<object, { o: ResolvedSse; onExpired: 'status' | 'reset' }>();
  private readonly channels = new Map<string, Fanout>();
  private readonly maxPending: number;
  private closed = false;

  constructor(options: HubOptions = {}) {
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'an object', options);
    const { store, maxPendingEvents, ...rest } = options;
    const mp = maxPendingEvents ?? MAX_PENDING;
    if (!Number.isInteger(mp) || mp < 1) throw invalidOption('maxPendingEvents', 'a positive integer', mp);
    this.maxPending = mp;
    if (store !== undefined && (store === null || typeof store.append !== 'function' || typeof store.follow !== 'function')) {
      throw invalidOption('store', 'a hub store (memoryStore() or redisStore())', store);
    }
    this.store = store ?? new MemoryStore();
    this.options = rest;
    this.onExpired = checkOnExpired(rest.onExpired);
    this.resolved = resolveSse(rest);
  }

  /** Appends an event to a channel; resolves to its id. Throws STREAMSCOPE_ERR_INVALID_EVENT for a bad event type. */
  async publish(channel: string, event: HubEvent | string, options?: PublishOptions): Promise<string> {
    if (this.closed) throw new StreamscopeError('STREAMSCOPE_ERR_HUB_CLOSED');
    checkChannel(channel);
    const key = options === undefined ? undefined : options.key;
    if (key !== undefined) {
      if (typeof key !== 'string' || !KEY.test(key)) throw invalidOption('key', 'a string of 1-256 characters without NUL', key);
      if (typeof this.store.appendOnce !== 'function') throw invalidOption('key', 'used with a store that has appendOnce() (memoryStore(), redisStore())', this.store.kind);
    }
    const ev: HubEvent = typeof event === 'string' ? { data: event } : event ?? {};
    if (ev.event !== undefined && (typeof ev.event !== 'string' || /[\r\n]/.test(ev.event))) {
      throw new StreamscopeError('STREAMSCOPE_ERR_INVALID_EVENT', 'invalid event: event type must be a string without line breaks');
    }
    const type = ev.event === '' ? undefined : ev.event;
    const store = this.store;
    if (store instanceof MemoryStore) {
      return key === undefined ? store.appendSync(channel, type, dataText(ev.data)) : store.appendOnceSync(channel, type, dataText(ev.data), key);
    }
    try {
      const data = dataText(ev.data);
      return await (key === undefined ? store.append(channel, type, data) : (store as Required<Pick<HubStore, 'appendOnce'>>).appendOnce(channel, type, data, key));
    } catch (err) {
      throw err instanceof StreamscopeError ? err : new StreamscopeError('STREAMSCOPE_ERR_STORE', `event store failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  }

  private settings(options: SubscribeOptions | undefined): { o: ResolvedSse; onExpired: 'status' | 'reset' } {
    if (options === undefined) return { o: this.resolved, onExpired: this.onExpired };
    let s = this.perCall.get(options);
    if (s === undefined) {
      const merged = resolveSse({ ...this.options, ...options });
      const own = options.rateLimit !== undefined || options.shed !== undefined;
      const o = own ? merged : Object.freeze({ ...merged, limits: this.resolved.limits });
      s = { o, onExpired: options.onExpired === undefined ? this.onExpired : checkOnExpired(options.onExpired) };
      this.perCall.set(options, s);
    }
    return s;
  }

  /**
   * Serves `channel` as an SSE stream on `res`. Resolves to the stream, or to null when the request
   * was answered otherwise: 429/503 (limits), 400 (malformed Last-Event-ID), 416 (unknown or expired
   * id, with `X-Next-Cursor`). Never rejects for a client's doing; a failing store ends the stream with
   * an `error` event.
   */
  async subscribe(req: IncomingMessage, res: ServerResponse, channel: string, options?: SubscribeOptions): Promise<SseStream | null> {
    checkChannel(channel);
    const { o, onExpired } = this.settings(options);
    if (this.closed) return hubClosed(res);
    const metrics = o.config.metrics;
    const rejected = admit(o.limits, req, res, metrics, o.route);
    if (rejected !== null) return null;
    const last = readLastEventId(req);
    if (last.kind === 'invalid') {
      countResume(metrics, o, req, res, 'invalid');
      answer(res, 'STREAMSCOPE_ERR_INVALID_EVENT_ID');
      return null;
    }

    // A first connection (no id) is anchored at the channel's last id, read before it follows the channel:
    // it gets every event after that id (replayed if the live feed has not brought it yet), and the anchor
    // goes out as its first frame, so that a cut before its first event still resumes without a gap.
    let anchor: string | null = null;
    let epoch = '';
    if (last.kind === 'none') {
      try {
        const info = await this.store.info(channel);
        anchor = info.last;
        epoch = info.epoch;
      } catch (err) {
        tracker.fault('hub', err);
        storeUnavailable(res);
        return null;
      }
      if (this.closed) return hubClosed(res);
    }

    const stream = new SseStream(req, res, o, null);
    const sub = new Sub(stream, this.maxPending, o.encode);
    let fan: Fanout;
    try {
      fan = await this.join(channel, sub);
    } catch (err) {
      tracker.fault('hub', err);
      storeUnavailable(res);
      return null;
    }
    const leave = (): void => this.leave(channel, fan, sub);
    if (req.destroyed && res.destroyed) {
      leave();
      return null;
    }
    if (this.closed) {
      // close() ran while this subscribe awaited the store: open nothing (no heartbeat, no shed count, no stream)
      leave();
      return hubClosed(res);
    }

    // where the replay starts: a first connection's anchor, or (set below) a resume's checked id
    let cursor = anchor ?? ZERO_ID;
    let result: 'replayed' | 'expired' | null = null;
    let reset: { id: string; body: unknown } | null = null;
    if (last.kind === 'valid') {
      try {
        const info = await this.store.info(channel);
        epoch = info.epoch;
        // A bare `0-0` asks for everything retained, in whatever epoch; any other id must be of the
        // store's current epoch, else the history it belongs to is gone (a bare `<ms>-<seq>` from before
        // epochs included: nothing tells which history it came from).
        const zero = streamIdOf(last.id) === ZERO_ID;
        const idEpoch = epochOf(last.id);
        const after = idEpoch === null && zero ? withEpoch(info.epoch, ZERO_ID) : last.id;
        let why: 'unknown' | 'expired' | null = null;
        if (epochOf(after) !== info.epoch) why = 'unknown';
        else if (compareIds(after, info.last) > 0) why = 'unknown';
        // below the oldest retained event: trimmed, or (not trimmed, so nothing of this epoch was ever
        // older) the channel's stream was deleted and begun again
        else if ((info.trimmed || !zero) && info.first !== null && compareIds(after, predecessor(info.first)) < 0) why = 'expired';
        const next = info.first === null ? info.last : predecessor(info.first);
        if (why === null) {
          cursor = after;
          result = 'replayed';
        } else if (onExpired === 'reset') {
          cursor = info.last;
          result = 'expired';
          reset = { id: info.last, body: { reason: why, lastEventId: after, nextCursor: next } };
        } else {
          leave();
          countResume(metrics, o, req, res, 'expired');
          const code = why === 'unknown' ? 'STREAMSCOPE_ERR_UNKNOWN_EVENT_ID' : 'STREAMSCOPE_ERR_EXPIRED_EVENT_ID';
          answer(res, code, format(code, { id: after }), { 'X-Next-Cursor': next }, { nextCursor: next });
          return null;
        }
      } catch (err) {
        leave();
        tracker.fault('hub', err);
        storeUnavailable(res);
        return null;
      }
    }

    if (this.closed) {
      leave();
      return hubClosed(res);
    }
    sub.epoch = epoch;
    sub.opened = true;
    sub.hub = this;
    sub.channel = channel;
    sub.fan = fan;
    stream[kOnClose](sub);
    stream[kOpen]();
    if (stream.closed) return stream;
    const s = stream[kState];
    try {
      // a hub route can be resumed: its results show at 0 from its first subscriber (docs/metrics.md)
      const rm = s === undefined ? null : routeMetricsOf(s);
      rm?.usesResumes();
      if (result !== null) rm?.resume(result).inc();
    } catch (err) {
      tracker.fault('metrics', err);
    }
    if (reset !== null) stream[kPush](encodeEvent({ id: reset.id, event: 'reset', data: reset.body }, o.encode), reset.id);
    // An id-only frame dispatches no event but sets the client's last event id (WHATWG "dispatch the
    // event"): a browser whose first connection drops before its first event reconnects with it.
    if (anchor !== null) stream[kPush](anchorFrame(anchor, o.encode !== undefined), anchor);
    void catchUp(this.store, channel, sub, cursor);
    return stream;
  }

  private async join(channel: string, sub: Sub): Promise<Fanout> {
    let fan = this.channels.get(channel);
    if (fan === undefined) {
      const f = new Fanout();
      fan = f;
      this.channels.set(channel, f);
      f.ready = this.store.follow(channel, f.onEvent).then((unfollow) => {
        if (this.channels.get(channel) !== f) unfollow();
        else f.unfollow = unfollow;
      });
      f.ready.catch(() => {
        if (this.channels.get(channel) === f) this.channels.delete(channel);
      });
    }
    fan.add(sub);
    try {
      await fan.ready;
    } catch (err) {
      fan.remove(sub);
      throw err;
    }
    return fan;
  }

  /** @internal A subscriber's stream closed (or its subscribe gave up): it leaves the channel's fan-out. */
  leave(channel: string, fan: Fanout, sub: Sub): void {
    fan.remove(sub);
    sub.pending = null;
    if (fan.subs.size === 0 && this.channels.get(channel) === fan) {
      this.channels.delete(channel);
      fan.stop();
      if (fan.unfollow !== null) fan.unfollow();
    }
  }

  /** Subscribers on this instance (all channels, or one). */
  subscribers(channel?: string): number {
    if (channel !== undefined) return this.channels.get(channel)?.subs.size ?? 0;
    let n = 0;
    for (const f of this.channels.values()) n += f.subs.size;
    return n;
  }

  /** Ends every stream (outcome completed; clients reconnect elsewhere) and closes the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // a subscribe still awaiting the store (not opened) sees `closed` when it resumes and answers 503 itself
    for (const fan of [...this.channels.values()]) {
      for (const sub of [...fan.subs]) if (sub.opened) sub.stream.close();
      fan.stop();
    }
    this.channels.clear();
    await this.store.close();
  }
}

/** The hub is closed (or closed while this subscribe awaited the store): 503, the client reconnects elsewhere. */
function hubClosed(res: ServerResponse): null {
  answer(res, 'STREAMSCOPE_ERR_HUB_CLOSED', 'hub closed', { 'Retry-After': '1' });
  return null;
}

/** The store failed while a stream was being set up: 503, the client retries. */
function storeUnavailable(res: ServerResponse): void {
  answer(res, 'STREAMSCOPE_ERR_STORE', 'event store unavailable', { 'Retry-After': '1' });
}

/** The id-only anchor frame; with checksums it also names the id in a comment (clients that skip id-only frames read it there). */
function anchorFrame(id: string, withComment: boolean): string {
  return (withComment ? ': ' + ANCHOR_COMMENT + id + '\n' : '') + 'id: ' + id + '\n\n';
}

function checkChannel(channel: unknown): void {
  if (typeof channel !== 'string' || !CHANNEL.test(channel)) throw invalidOption('channel', 'a string of 1-256 characters without line breaks', channel);
}

function checkOnExpired(v: unknown): 'status' | 'reset' {
  if (v === undefined) return 'status';
  if (v !== 'status' && v !== 'reset') throw invalidOption('onExpired', "'status' or 'reset'", v);
  return v;
}

function countResume(
  metrics: ResolvedSse['config']['metrics'],
  o: ResolvedSse,
  req: IncomingMessage,
  res: ServerResponse,
  result: 'invalid' | 'expired',
): void {
  try {
    metrics?.route(routeOf(o.route, req, res)).resume(result).inc();
  } catch (err) {
    tracker.fault('metrics', err);
  }
}

export function createHub(options: HubOptions = {}): PublicHub {
  return new Hub(options);
}

export { ZERO_ID };
