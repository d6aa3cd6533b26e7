import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { codes, StreamClosedError, StreamscopeError, type ErrorCode } from '../../errors.js';
import { directWrite, plainWrite, promote } from '../../core/response-hook.js';
import { inStream, track } from '../../core/track.js';
import type { StreamState } from '../../core/stream-state.js';
import { getTracker } from '../../core/tracker.js';
import { routeMetricsOf } from '../../consumers/metrics.js';
import type { RejectReason, Shedder } from '../limits/index.js';
import { rawLastEventId } from '../hub/ids.js';
import { encodeComment, encodeEvent, type SseEvent } from './encoder.js';
import type { ResolvedSse } from './options.js';
import { h2StreamOf, needsDrain } from '../../core/http2.js';

const tracker = getTracker();

/** Internal entry points shared with the hub (not public API). */
import {
  kSseNeedsDrain as kNeedsDrain,
  kSseOnClose as kOnClose,
  kSseOpen as kOpen,
  kSsePush as kPush,
  kSsePushShared as kPushShared,
  kSseState as kState,
} from '../../core/symbols.js';
/** kPushShared: the hub's live fan-out, one event's bytes built once and shared by every subscriber (see SharedFrame). */
export { kPush, kOpen, kOnClose, kState, kNeedsDrain, kPushShared };

/**
 * One event's frame in every form a subscriber may need, built once per event for all of them: the text,
 * its UTF-8 bytes, and the same bytes as one HTTP/1.1 chunk (`<hex length>\r\n<bytes>\r\n`). Written
 * Buffers are never changed, so one is shared by every socket it is written to.
 */
export class SharedFrame {
  readonly bytes: Buffer;
  readonly chunk: Buffer;
  constructor(readonly text: string) {
    const len = Buffer.byteLength(text, 'utf8');
    const head = len.toString(16) + '\r\n';
    const chunk = Buffer.allocUnsafe(head.length + len + 2);
    chunk.write(head, 0, 'latin1');
    chunk.write(text, head.length, 'utf8');
    chunk[head.length + len] = 13;
    chunk[head.length + len + 1] = 10;
    this.chunk = chunk;
    this.bytes = chunk.subarray(head.length, head.length + len);
  }
}

/** The parts of Node's OutgoingMessage the direct path reads (stable since Node 0.x; checked at every write). */
type Outgoing = ServerResponse & {
  chunkedEncoding?: boolean;
  _hasBody?: boolean;
  _headerSent?: boolean;
  outputData?: unknown[];
  strictContentLength?: boolean;
  finished?: boolean;
};
type HttpSocket = Socket & { _httpMessage?: unknown };

/** Told once when a stream closes (the hub's subscriber: an object it has anyway, not a closure per stream). */
export interface CloseHook {
  onStreamClose(): void;
}

const HEARTBEAT = encodeComment();
const CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

type Waiter = { resolve: () => void; reject: (err: Error) => void };

// The last frame's bytes: a hub's fan-out pushes one frame to every subscriber in turn, encoded once.
// Written Buffers are never changed, so sharing one between responses is safe.
let lastFrame = '';
let lastBytes: Buffer = Buffer.alloc(0);
function utf8(frame: string): Buffer {
  if (frame !== lastFrame) {
    lastBytes = Buffer.from(frame, 'utf8');
    lastFrame = frame;
  }
  return lastBytes;
}

/**
 * One resilient SSE stream. Built by `sse()` and by `hub.subscribe()`. Every public method is safe
 * to call at any time: after the client has gone, `send()` rejects with StreamClosedError and the
 * others do nothing.
 */
export class SseStream {
  /** The raw Last-Event-ID of the request (header, else `lastEventId` query parameter). */
  readonly lastEventId: string | undefined;
  /** Why the stream was refused before it opened (429 / 503 answered), else null. */
  readonly rejected: RejectReason | null;
  /** The id of the last event sent with an id. */
  lastSentId: string | undefined = undefined;

  private readonly req: IncomingMessage;
  private readonly res: ServerResponse;
  private readonly o: ResolvedSse;
  private state: StreamState | undefined = undefined;
  private done = false;
  private cause: StreamscopeError | undefined = undefined;
  private ctrl: AbortController | null = null;
  private waiters: Waiter[] | null = null;
  private drainTimer: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private timeout: NodeJS.Timeout | null = null;
  /** Set by every write, cleared by the heartbeat: a beat is sent only after a quiet interval. */
  private wrote = false;
  private closeHook: CloseHook | null = null;
  /** The `drain` listener of a wait in progress (whenWritable), else null. */
  private drainListener: (() => void) | null = null;
  /** The shedder this open stream counts in (its route's), until it closes. */
  private shedder: Shedder | null = null;
  /**
   * HTTP/1 and nothing but Node (and the tracker) writes this response: the hub's live events may go
   * straight to this socket (kPushShared), else null. `direct` is the `res.write` seen then: a wrapper
   * installed later (compression) turns the direct path off.
   */
  private sock: HttpSocket | null = null;
  private direct: unknown = null;

  constructor(req: IncomingMessage, res: ServerResponse, o: ResolvedSse, rejected: RejectReason | null) {
    this.req = req;
    this.res = res;
    this.o = o;
    this.rejected = rejected;
    let last: string | undefined;
    try {
      last = rawLastEventId(req);
    } catch {
      last = undefined;
    }
    this.lastEventId = last;
    if (rejected !== null) this.done = true;
  }

  /** True once the client has gone, the stream timed out, failed, or close() was called. */
  get closed(): boolean {
    return this.done;
  }

  /** Aborts on client close, timeout, failure or `close()`; `reason` is a StreamClosedError. */
  get signal(): AbortSignal {
    if (this.ctrl === null) {
      this.ctrl = new AbortController();
      if (this.done) this.ctrl.abort(this.closedError());
    }
    return this.ctrl.signal;
  }

  /** The tracker's trace id of this stream ('' when tracing is off). */
  get traceId(): string {
    return this.state?.traceId ?? '';
  }

  /**
   * Sends one event. Resolves once it is handed to the socket within the buffer limit; waits for
   * `drain` when the socket is backed up; rejects with StreamClosedError once the client is gone
   * (so the producer stops), and with STREAMSCOPE_ERR_INVALID_EVENT for an id/event with a line break.
   */
  send(event: SseEvent | string): Promise<void> {
    if (this.done) return Promise.reject(this.closedError());
    let frame: string;
    try {
      frame = encodeEvent(typeof event === 'string' ? { data: event } : event, this.o.encode);
    } catch (err) {
      return Promise.reject(err);
    }
    if (!this[kPush](frame, typeof event === 'string' ? undefined : event.id)) return Promise.reject(this.closedError());
    return this.whenWritable();
  }

  /** A comment line (`: text`); ignored by clients. Never waits, never throws. */
  comment(text = ''): void {
    if (this.done) return;
    this[kPush](encodeComment(text), undefined);
  }

  /** Ends the stream normally (outcome `completed`); `signal` aborts. Idempotent. */
  close(): void {
    if (this.done) return;
    this.finish(undefined);
    this.end();
  }

  /**
   * Ends the stream because the producer failed: sends an `error` event
   * `{ code, message, traceId }` and records the `error` outcome. Idempotent.
   */
  fail(err: unknown): void {
    if (this.done) return;
    const s = this.state;
    if (s !== undefined) tracker.markError(s);
    try {
      this[kPush](encodeEvent({ event: 'error', data: this.errorBody(err) }, this.o.encode), undefined);
    } catch (e) {
      tracker.fault('sse', e);
    }
    this.finish(new StreamscopeError('STREAMSCOPE_ERR_PRODUCER'));
    this.end();
  }

  /**
   * Runs a producer against this stream: resolves when it is done, closing the stream; a throw
   * becomes `fail(err)`. A StreamClosedError after the client left ends it quietly. Never rejects.
   */
  async run(producer: (stream: SseStream) => unknown): Promise<void> {
    const s = this.state;
    const own = s !== undefined && tracker.handlerRuns(s);
    try {
      await (s === undefined ? producer(this) : inStream(s, producer as (...a: unknown[]) => unknown, undefined, [this]));
      this.close();
    } catch (err) {
      if (!this.done) this.fail(err);
    } finally {
      if (own) tracker.handlerSettled(s);
    }
  }

  // ---- internal -------------------------------------------------------------------------------

  /** Opens the response: headers, retry, timers, tracker. */
  [kOpen](): void {
    const res = this.res;
    const o = this.o;
    try {
      this.state = track(this.req, res, o.config, { specific: true });
    } catch (err) {
      tracker.fault('sse', err);
    }
    if (o.limits.shed !== null) {
      try {
        this.shedder = o.limits.shed.of(o.route, this.req, res);
        this.shedder.active++;
      } catch (err) {
        tracker.fault('sse', err);
      }
    }
    res.on('close', this.onResClose);
    try {
      // HTTP/2 (compatibility API) forbids Connection and its kind; its socket is the session's, shared.
      const h2 = h2StreamOf(res) !== null;
      if (!res.headersSent) res.writeHead(200, h2 ? o.h2Headers : o.headers);
      res.flushHeaders();
      const sock = h2 ? null : res.socket;
      if (sock != null) {
        sock.setNoDelay(true);
        // the direct path writes what Node's write would, and counts what the tracker's would
        if (plainWrite(res)) {
          this.sock = sock;
          this.direct = res.write;
        }
      }
    } catch (err) {
      tracker.fault('sse', err);
    }
    const s = this.state;
    if (s !== undefined) {
      try {
        promote(s);
        // a route with limits shows the reasons they can give, at 0, from its first stream (docs/metrics.md)
        if (o.limits.rate !== null) routeMetricsOf(s)?.usesRejections(['rate_limited']);
        if (o.limits.shed !== null) routeMetricsOf(s)?.usesRejections(['overloaded']);
      } catch (err) {
        tracker.fault('sse', err);
      }
    }
    if (res.destroyed === true || res.closed === true || h2StreamOf(res)?.destroyed === true) {
      this.onResClose();
      return;
    }
    if (o.retryFrame !== '') this[kPush](o.retryFrame, undefined);
    this.wrote = true;
    if (o.heartbeatMs > 0) {
      this.heartbeat = setInterval(() => this.beat(), o.heartbeatMs);
      this.heartbeat.unref();
    }
    if (o.timeoutMs > 0) {
      this.timeout = setTimeout(() => this.onTimeout(), o.timeoutMs);
      this.timeout.unref();
    }
  }

  /**
   * Writes one framed event without allocating a promise (the hub's fan-out path). Returns false
   * when the stream is closed, or when the frame would take the queue past maxBufferedBytes: then the
   * stuck consumer is cut so that it can resume later.
   */
  [kPush](frame: string, id: string | undefined, encoded?: Buffer): boolean {
    if (this.done) return false;
    const res = this.res;
    // Frames go out as UTF-8 Buffers, so Node's queue (writableLength) counts bytes, as maxBufferedBytes does
    // everywhere (it counts a queued string by its UTF-16 length).
    const bytes = encoded ?? utf8(frame);
    const queued = res.writableLength;
    if (queued > 0 && queued + bytes.length > this.o.maxBufferedBytes) {
      this.cut('STREAMSCOPE_ERR_BUFFER_FULL');
      return false;
    }
    if (id !== undefined) this.lastSentId = id;
    this.wrote = true;
    try {
      res.write(bytes);
    } catch (err) {
      tracker.fault('sse', err);
    }
    return true;
  }

  /**
   * The hub's live path: one event's shared bytes, written straight to the socket when that is exactly what
   * `res.write` would do — one `socket.write` of a pre-built chunk instead of Node's four writes, its cork
   * and its nextTick, per subscriber and event. Same checks as kPush (closed, maxBufferedBytes) and the same
   * counts as the tracker's `res.write` (writes, bytes); only a write that cannot meet backpressure goes
   * this way (the socket's queue stays under its high-water mark), so `res.write` alone ever returns false
   * and Node's `drain` bookkeeping stays whole. Anything else goes through kPush.
   * `several`: the frame carries several events (the fan-out's catch-up of a subscriber): written to an empty
   * queue, it could leave more than maxBufferedBytes queued, which one event at a time would have been refused —
   * then the subscriber is cut after the write, as it would have been before the write of the one past the cap.
   */
  [kPushShared](f: SharedFrame, id: string | undefined, several = false): boolean {
    if (this.done) return false;
    const sock = this.sock;
    const res = this.res as Outgoing;
    if (
      sock !== null &&
      res.write === this.direct &&
      sock._httpMessage === res &&
      sock.writable &&
      res._headerSent === true &&
      res._hasBody === true &&
      res.finished !== true &&
      res.destroyed !== true &&
      res.strictContentLength !== true &&
      res.outputData !== undefined &&
      res.outputData.length === 0
    ) {
      const out = res.chunkedEncoding === true ? f.chunk : f.bytes;
      const queued = sock.writableLength;
      if (queued > 0 && queued + f.bytes.length > this.o.maxBufferedBytes) {
        this.cut('STREAMSCOPE_ERR_BUFFER_FULL');
        return false;
      }
      if (queued + out.length < sock.writableHighWaterMark) {
        let wrote: boolean;
        try {
          wrote = directWrite(res, sock, out, f.bytes.length);
        } catch (err) {
          tracker.fault('sse', err);
          wrote = true;
        }
        if (wrote) {
          if (id !== undefined) this.lastSentId = id;
          this.wrote = true;
          return several ? this.withinCap(sock.writableLength) : true;
        }
      }
    }
    if (!several || sock === null || res.write !== this.direct) return this[kPush](f.text, id, f.bytes);
    // Node's chunked res.write corks the socket until the tick ends: uncorked now, its queue is what the kernel
    // did not take. A socket corked by someone else is left so, and not judged.
    const corked = sock.writableCorked;
    if (!this[kPush](f.text, id, f.bytes)) return false;
    if (corked !== 0) return true;
    if (sock.writableCorked === 1) sock.uncork();
    return sock.writableCorked !== 0 || this.withinCap(sock.writableLength);
  }

  /** After a write of several events: a queue past maxBufferedBytes cuts the stream (false). */
  private withinCap(queued: number): boolean {
    if (queued <= this.o.maxBufferedBytes) return true;
    this.cut('STREAMSCOPE_ERR_BUFFER_FULL');
    return false;
  }

  [kOnClose](hook: CloseHook): void {
    this.closeHook = hook;
  }

  get [kState](): StreamState | undefined {
    return this.state;
  }

  get [kNeedsDrain](): boolean {
    return needsDrain(this.res);
  }

  /** Resolves when the socket can take more (now, or at `drain`); bounded by drainTimeoutMs. */
  whenWritable(): Promise<void> {
    if (this.done) return Promise.reject(this.closedError());
    if (!needsDrain(this.res)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      if (this.waiters === null) {
        this.waiters = [];
        // made while a wait lasts only: an idle subscriber carries no closure for it
        const onDrain = (): void => this.onDrain();
        this.drainListener = onDrain;
        this.res.once('drain', onDrain);
        this.drainTimer = setTimeout(() => this.onDrainTimeout(), this.o.drainTimeoutMs);
        this.drainTimer.unref();
      }
      this.waiters.push({ resolve, reject });
    });
  }

  private closedError(): StreamClosedError {
    const cause = this.cause;
    return cause === undefined ? new StreamClosedError() : new StreamClosedError(`stream closed: ${cause.message}`, { cause });
  }

  private errorBody(err: unknown): { code: string; message: string; traceId: string } {
    let code: string = 'STREAMSCOPE_ERR_PRODUCER';
    const c = (err as { code?: unknown } | null)?.code;
    if (typeof c === 'string' && CODE.test(c)) code = c;
    let message: string = codes.STREAMSCOPE_ERR_PRODUCER;
    if (this.o.exposeErrors || err instanceof StreamscopeError) {
      const m = (err as { message?: unknown } | null)?.message;
      if (typeof m === 'string') message = m;
    }
    return { code, message, traceId: this.traceId };
  }

  private end(): void {
    try {
      if (!this.res.writableEnded) this.res.end();
    } catch (err) {
      tracker.fault('sse', err);
    }
  }

  /** Cuts a consumer that does not keep up: the connection is destroyed, the client resumes later. */
  private cut(code: ErrorCode): void {
    if (this.done) return;
    const s = this.state;
    if (s !== undefined && code === 'STREAMSCOPE_ERR_DRAIN_TIMEOUT') tracker.markTimeout(s);
    this.finish(new StreamscopeError(code));
    try {
      this.res.destroy();
    } catch (err) {
      tracker.fault('sse', err);
    }
  }

  /** Marks the stream closed once: timers off, waiters rejected, signal aborted, hook called. */
  private finish(cause: StreamscopeError | undefined): void {
    if (this.done) return;
    this.done = true;
    this.cause = cause;
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    if (this.timeout !== null) clearTimeout(this.timeout);
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.heartbeat = this.timeout = this.drainTimer = null;
    if (this.shedder !== null) this.shedder.active--;
    this.shedder = null;
    const waiters = this.waiters;
    this.waiters = null;
    if (this.drainListener !== null) this.res.removeListener('drain', this.drainListener);
    this.drainListener = null;
    if (waiters !== null) {
      const err = this.closedError();
      for (const w of waiters) w.reject(err);
    }
    if (this.ctrl !== null && !this.ctrl.signal.aborted) {
      try {
        this.ctrl.abort(this.closedError());
      } catch (err) {
        tracker.fault('sse', err); // a throwing abort listener belongs to the app; do not let it escape here
      }
    }
    const hook = this.closeHook;
    this.closeHook = null;
    if (hook !== null) {
      try {
        hook.onStreamClose();
      } catch (err) {
        tracker.fault('sse', err);
      }
    }
  }

  private readonly onResClose = (): void => {
    this.finish(this.cause);
  };

  private onDrain(): void {
    this.drainListener = null;
    const waiters = this.waiters;
    this.waiters = null;
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.drainTimer = null;
    if (waiters !== null) for (const w of waiters) w.resolve();
  }

  private onDrainTimeout(): void {
    this.drainTimer = null;
    this.cut('STREAMSCOPE_ERR_DRAIN_TIMEOUT');
  }

  private beat(): void {
    if (this.done) return;
    if (this.wrote || this.res.writableLength > 0) {
      this.wrote = false;
      return;
    }
    this[kPush](HEARTBEAT, undefined);
  }

  private onTimeout(): void {
    this.timeout = null;
    if (this.done) return;
    const s = this.state;
    if (s !== undefined) tracker.markTimeout(s);
    this.finish(new StreamscopeError('STREAMSCOPE_ERR_STREAM_CLOSED', 'stream timed out (timeoutMs)'));
    this.end();
  }
}
