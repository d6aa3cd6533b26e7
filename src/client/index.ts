import { createParser, type EventSourceMessage, type ParseError } from 'eventsource-parser';
import { StreamscopeError } from '../errors.js';
import { ANCHOR_COMMENT, CHECKSUM_COMMENT, checksumInput, crc32Portable, hex8, isHex8 } from '../runtime/sse/wire.js';
import { compareParsed, parseId, type ParsedId } from './ids.js';

/*
 * streamscope/client: an SSE client for browsers and Node (fetch + eventsource-parser) that resumes with
 * Last-Event-ID on any cut, verifies each event's checksum (`checksum: 'crc32'` on the server) and the order
 * of hub ids, drops corrupted and duplicated events (resuming after the last good one), and tells the app
 * when the server lost history (`reset` event or 416) instead of pretending continuity. docs/sse.md.
 * Browser-safe: no `node:` import here or in what it imports.
 */

export { StreamscopeError };

/** One verified event, delivered once, in order. */
export interface ClientEvent {
  /** The event's id (a hub id `<epoch>:<ms>-<seq>` when continuity is checked). */
  readonly id: string;
  /** The event type; `'message'` when the server sent none (as EventSource). */
  readonly event: string;
  readonly data: string;
}

/** The server lost the history after the client's last id: events between are gone. */
export interface ResetInfo {
  /** `expired` (trimmed), `unknown` (another epoch: the store lost its history), or `epoch` (ids changed epoch with no word from the server). */
  readonly reason: 'expired' | 'unknown' | 'epoch';
  /** The id the client resumed from. */
  readonly lastEventId: string | undefined;
  /** Where the stream continues from (the events after it are delivered). */
  readonly nextCursor: string;
  /** How the server said it: a 416 answer or a `reset` event. */
  readonly via: 'status' | 'event' | 'ids';
}

/** Why an event was dropped (each is followed by a resume from the last good event, except duplicates). */
export type DropReason = 'checksum' | 'missing-checksum' | 'bad-checksum' | 'orphan-checksum' | 'duplicate';

export interface ClientOptions {
  /** Every verified event, once, in order. */
  onEvent: (event: ClientEvent) => void;
  /** The server lost history: told before the events that follow it. */
  onReset?: (info: ResetInfo) => void;
  /** A fatal error (`STREAMSCOPE_ERR_MALFORMED_STREAM`, `STREAMSCOPE_ERR_STREAM_REFUSED`): reported once, the client is closed. */
  onError?: (err: StreamscopeError) => void;
  /** A connection opened (200, text/event-stream). */
  onOpen?: () => void;
  /** An event was dropped (for logs and tests). */
  onDrop?: (reason: DropReason, id: string | undefined) => void;
  /** Resume after this id on the first connection. */
  lastEventId?: string;
  /** `'crc32'` (default): every event must carry a valid checksum; `'none'` accepts events without one. */
  checksum?: 'crc32' | 'none';
  /** `'hub'` (default): every event needs a hub id, increasing within an epoch; `'none'` takes ids as they come. */
  continuity?: 'hub' | 'none';
  /** Largest event, in characters of its data (or buffered for it), before the stream counts as malformed (default 1,048,576). */
  maxEventLength?: number;
  /** Reconnection delay until the server sends `retry:` (default 1000 ms). */
  retryMs?: number;
  /** Cap of the backoff that doubles the delay after each connection that delivered nothing (default 30000 ms). */
  maxRetryMs?: number;
  /** Extra request headers (same-origin in browsers, or the server must allow them: Last-Event-ID is not CORS-safelisted). */
  headers?: Record<string, string>;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
}

export interface SseClient {
  /** Stops the client: aborts the connection, cancels a pending reconnect. Idempotent. */
  close(): void;
  /** The id of the last event delivered (or the anchor / cursor it resumes from). */
  readonly lastEventId: string | undefined;
  /** Connections opened so far. */
  readonly connections: number;
  /** Resolves when the client is closed: with the fatal error, or undefined after close(). */
  readonly done: Promise<StreamscopeError | undefined>;
}

const MALFORMED = 'STREAMSCOPE_ERR_MALFORMED_STREAM';
const REFUSED = 'STREAMSCOPE_ERR_STREAM_REFUSED';
/** Connections in a row that fail verification before their first good event: then the stream is malformed. */
const MAX_STRIKES = 2;

function positive(name: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) {
    throw new StreamscopeError('STREAMSCOPE_ERR_INVALID_OPTION', `option ${name} must be a finite number >= 0, got ${String(v)}`);
  }
  return v;
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (v === undefined) return allowed[0] as T;
  if (!allowed.includes(v as T)) throw new StreamscopeError('STREAMSCOPE_ERR_INVALID_OPTION', `option ${name} must be one of ${allowed.join(', ')}, got ${String(v)}`);
  return v as T;
}

/** Ends one connection early: `resume` reconnects from the last good event, `fatal` closes the client. */
class Stop {
  constructor(
    readonly fatal: StreamscopeError | null,
    readonly strike: boolean,
  ) {}
}

/**
 * Opens an SSE stream at `url` and keeps it: see {@link ClientOptions}. Throws `STREAMSCOPE_ERR_INVALID_OPTION`
 * for bad options; everything after is reported through the callbacks.
 */
export function connect(url: string | URL, options: ClientOptions): SseClient {
  if (options === null || typeof options !== 'object' || typeof options.onEvent !== 'function') {
    throw new StreamscopeError('STREAMSCOPE_ERR_INVALID_OPTION', 'option onEvent must be a function');
  }
  const verifyCrc = oneOf('checksum', options.checksum, ['crc32', 'none'] as const) === 'crc32';
  const hubIds = oneOf('continuity', options.continuity, ['hub', 'none'] as const) === 'hub';
  const maxEvent = positive('maxEventLength', options.maxEventLength, 1024 * 1024);
  let base = positive('retryMs', options.retryMs, 1000);
  const cap = positive('maxRetryMs', options.maxRetryMs, 30000);
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);

  let lastId: string | undefined = options.lastEventId;
  let last: ParsedId | null = lastId === undefined ? null : parseId(lastId);
  let closed = false;
  let connections = 0;
  let fails = 0; // connections in a row that delivered no event
  let strikes = 0; // connections in a row that ended in a verification failure before their first event
  let progressed = false; // this connection delivered an event
  let openedAt = 0; // when this connection's event stream opened (0: it did not)
  let ctrl: AbortController | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let wake: (() => void) | null = null;
  let settle: (v: StreamscopeError | undefined) => void = () => {};
  const done = new Promise<StreamscopeError | undefined>((r) => (settle = r));

  const safe = (fn: (() => void) | undefined): void => {
    if (fn === undefined) return;
    try {
      fn();
    } catch (err) {
      // an app callback's own error must not stop the stream; surface it the way the platform does
      setTimeout(() => {
        throw err;
      }, 0);
    }
  };

  const finish = (err: StreamscopeError | undefined): void => {
    if (closed) return;
    closed = true;
    ctrl?.abort();
    if (timer !== null) clearTimeout(timer);
    wake?.();
    if (err !== undefined) safe(() => options.onError?.(err));
    settle(err);
  };

  const accept = (id: string, parsed: ParsedId | null): void => {
    lastId = id;
    last = parsed;
    progressed = true;
  };

  /** One connection: resolves with how it ended (`stop` null: the body ended, or a status to retry); throws on a network error. */
  const once = async (): Promise<{ stop: Stop | null; retryAfterMs: number }> => {
    const c = new AbortController();
    ctrl = c;
    // Accept is CORS-safelisted; Last-Event-ID is not (a cross-origin server must allow it)
    const headers: Record<string, string> = { Accept: 'text/event-stream', ...options.headers };
    if (lastId !== undefined) headers['Last-Event-ID'] = lastId;
    const res = await doFetch(url, { headers, signal: c.signal });
    connections++;
    if (res.status === 416) {
      // history lost: say so, then continue from where the server can
      let body: { error?: { code?: string; nextCursor?: string } } = {};
      try {
        body = (await res.json()) as typeof body;
      } catch {
        /* the header is enough */
      }
      const next = res.headers.get('X-Next-Cursor') ?? body.error?.nextCursor;
      const nextParsed = next === undefined || next === null ? null : parseId(next);
      if (next == null || (hubIds && nextParsed === null)) {
        return { stop: new Stop(new StreamscopeError(REFUSED, `416 without a usable X-Next-Cursor from ${String(url)}`), false), retryAfterMs: 0 };
      }
      const info: ResetInfo = { reason: body.error?.code === 'STREAMSCOPE_ERR_EXPIRED_EVENT_ID' ? 'expired' : 'unknown', lastEventId: lastId, nextCursor: next, via: 'status' };
      lastId = next;
      last = nextParsed;
      safe(() => options.onReset?.(info));
      return { stop: null, retryAfterMs: 0 };
    }
    const retryAfter = Number(res.headers.get('Retry-After'));
    const retryAfterMs = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 0;
    if (res.status === 429 || res.status === 408 || res.status >= 500) {
      await res.body?.cancel().catch(() => {});
      return { stop: null, retryAfterMs };
    }
    const type = res.headers.get('Content-Type') ?? '';
    if (res.status !== 200 || !/^text\/event-stream\b/i.test(type)) {
      await res.body?.cancel().catch(() => {});
      return { stop: new Stop(new StreamscopeError(REFUSED, `${String(url)} answered ${res.status} ${type || '(no content type)'}, not an event stream`), false), retryAfterMs: 0 };
    }
    safe(options.onOpen);
    openedAt = Date.now();
    if (res.body === null) return { stop: null, retryAfterMs: 0 };

    let stop: Stop | null = null;
    let pending: string | null = null; // the checksum of the block being read
    const drop = (reason: DropReason, id: string | undefined, strike: boolean): void => {
      safe(() => options.onDrop?.(reason, id));
      stop ??= new Stop(null, strike);
    };
    const malformed = (what: string): void => {
      stop ??= new Stop(new StreamscopeError(MALFORMED, `malformed event stream from ${String(url)}: ${what}`), false);
    };
    const parser = createParser({
      maxBufferSize: maxEvent,
      onRetry: (ms) => {
        if (stop === null) base = ms;
      },
      onComment: (text) => {
        if (stop !== null) return;
        if (text.startsWith(CHECKSUM_COMMENT)) {
          // a checksum whose block dispatched no event: the block lost its data lines on the way
          if (pending !== null) return drop('orphan-checksum', undefined, true);
          pending = text.slice(CHECKSUM_COMMENT.length);
        } else if (text.startsWith(ANCHOR_COMMENT) && lastId === undefined) {
          const id = text.slice(ANCHOR_COMMENT.length);
          const p = parseId(id);
          if (p !== null || !hubIds) {
            lastId = id;
            last = p;
          }
        }
      },
      onError: (err: ParseError) => {
        if (stop === null && err.type === 'max-buffer-size-exceeded') malformed(`an event over maxEventLength (${maxEvent})`);
      },
      onEvent: (ev: EventSourceMessage) => {
        if (stop !== null) return;
        const crc = pending;
        pending = null;
        // the parser's bound covers what it buffers across reads; an event that arrived whole is measured here
        if (ev.data.length > maxEvent) return malformed(`an event over maxEventLength (${maxEvent})`);
        if (verifyCrc) {
          if (crc === null) return drop('missing-checksum', ev.id, true);
          if (!isHex8(crc)) return drop('bad-checksum', ev.id, true);
          if (hex8(crc32Portable(checksumInput(ev.id, ev.event, ev.data))) !== crc) return drop('checksum', ev.id, true);
        }
        const id = ev.id;
        if (id === undefined || id === '') {
          // sse().fail() ends a stream with an `error` event that has no id: the app's to see, not a malformed stream
          if (hubIds && ev.event !== 'error') return malformed('an event without an id');
          return safe(() => options.onEvent({ id: lastId ?? '', event: ev.event ?? 'message', data: ev.data }));
        }
        const p = parseId(id);
        if (hubIds) {
          if (p === null) return malformed(`an id that is not a hub id (${id.slice(0, 80)})`);
          if (ev.event === 'reset') {
            let body: { reason?: string; lastEventId?: string } = {};
            try {
              body = JSON.parse(ev.data) as typeof body;
            } catch {
              /* the id is what matters */
            }
            const info: ResetInfo = { reason: body.reason === 'expired' ? 'expired' : 'unknown', lastEventId: lastId, nextCursor: id, via: 'event' };
            accept(id, p);
            return safe(() => options.onReset?.(info));
          }
          if (last !== null && last.epoch === p.epoch && compareParsed(p, last) <= 0) {
            return safe(() => options.onDrop?.('duplicate', id));
          }
          if (last !== null && last.epoch !== p.epoch) {
            const info: ResetInfo = { reason: 'epoch', lastEventId: lastId, nextCursor: id, via: 'ids' };
            safe(() => options.onReset?.(info));
          }
        }
        accept(id, p);
        safe(() => options.onEvent({ id, event: ev.event ?? 'message', data: ev.data }));
      },
    });

    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) break;
        parser.feed(decoder.decode(value, { stream: true }));
        if (stop !== null) break;
      }
    } finally {
      c.abort();
      reader.cancel().catch(() => {});
    }
    return { stop, retryAfterMs: 0 };
  };

  const sleep = (ms: number): Promise<void> =>
    new Promise((r) => {
      wake = r;
      timer = setTimeout(r, ms);
    });

  const loop = async (): Promise<void> => {
    while (!closed) {
      let retryAfterMs = 0;
      let strike = false;
      progressed = false;
      openedAt = 0;
      try {
        const r = await once();
        retryAfterMs = r.retryAfterMs;
        if (r.stop !== null && r.stop.fatal !== null) return finish(r.stop.fatal);
        strike = r.stop !== null && r.stop.strike;
      } catch {
        // a network error, a cut mid-event, or close(): resume (or stop) below
      }
      if (closed) return;
      // a stream that stayed open longer than the cap was healthy, if quiet: a cut of it starts the backoff afresh
      fails = progressed || (openedAt > 0 && Date.now() - openedAt >= cap) ? 0 : fails + 1;
      strikes = progressed || !strike ? 0 : strikes + 1;
      if (strikes >= MAX_STRIKES) {
        return finish(new StreamscopeError(MALFORMED, `malformed event stream from ${String(url)}: ${strikes} connections in a row failed verification before their first event`));
      }
      // the server's retry (or retryMs), doubled for each connection in a row that delivered nothing, capped
      const backoff = Math.min(cap, base * 2 ** Math.min(Math.max(0, fails - 1), 16));
      await sleep(Math.max(backoff, Math.min(retryAfterMs, cap)));
    }
  };

  void loop();

  return {
    close: () => finish(undefined),
    get lastEventId() {
      return lastId;
    },
    get connections() {
      return connections;
    },
    done,
  };
}
