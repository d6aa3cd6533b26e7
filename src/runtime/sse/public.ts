/**
 * The public face of an SSE stream: what `sse()` and `hub.subscribe()` return, and nothing of the implementation
 * (src/runtime/sse/stream.ts: its resolved options, tracker state and the hub's symbol-keyed fast path stay out
 * of the published .d.ts). The class is exported under the same name for `instanceof`, typed so that users do
 * not construct it: `sse()` does.
 */
import type { SseEvent } from './encoder.js';
import type { RejectReason } from '../limits/index.js';
import { SseStream as SseStreamClass } from './stream.js';

/**
 * One resilient SSE stream. Built by `sse()` and by `hub.subscribe()`. Every public method is safe
 * to call at any time: after the client has gone, `send()` rejects with StreamClosedError and the
 * others do nothing.
 */
export interface SseStream {
  /** The raw Last-Event-ID of the request (header, else `lastEventId` query parameter). */
  readonly lastEventId: string | undefined;
  /** Why the stream was refused before it opened (429 / 503 answered), else null. */
  readonly rejected: RejectReason | null;
  /** The id of the last event sent with an id. */
  lastSentId: string | undefined;
  /** True once the client has gone, the stream timed out, failed, or close() was called. */
  readonly closed: boolean;
  /** Aborts on client close, timeout, failure or `close()`; `reason` is a StreamClosedError. */
  readonly signal: AbortSignal;
  /** The tracker's trace id of this stream ('' when tracing is off). */
  readonly traceId: string;
  /**
   * Sends one event. Resolves once it is handed to the socket within the buffer limit; waits for
   * `drain` when the socket is backed up; rejects with StreamClosedError once the client is gone
   * (so the producer stops), and with STREAMSCOPE_ERR_INVALID_EVENT for an id/event with a line break.
   */
  send(event: SseEvent | string): Promise<void>;
  /** A comment line (`: text`); ignored by clients. Never waits, never throws. */
  comment(text?: string): void;
  /** Ends the stream normally (outcome `completed`); `signal` aborts. Idempotent. */
  close(): void;
  /**
   * Ends the stream because the producer failed: sends an `error` event
   * `{ code, message, traceId }` and records the `error` outcome. Idempotent.
   */
  fail(err: unknown): void;
  /**
   * Runs a producer against this stream: resolves when it is done, closing the stream; a throw
   * becomes `fail(err)`. A StreamClosedError after the client left ends it quietly. Never rejects.
   */
  run(producer: (stream: SseStream) => unknown): Promise<void>;
  /** Resolves when the socket can take more (now, or at `drain`); bounded by drainTimeoutMs. */
  whenWritable(): Promise<void>;
}

/** The class of every `SseStream`, for `stream instanceof SseStream`; built by `sse()` and `hub.subscribe()`, never by users. */
export const SseStream: abstract new (...args: never) => SseStream = SseStreamClass;
