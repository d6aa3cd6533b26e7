import type { IncomingMessage, ServerResponse } from 'node:http';
import { context } from '@opentelemetry/api';
import type { StreamConfig, StreamState } from './stream-state.js';
import { attach } from './response-hook.js';
import { isServerStream } from './http2.js';
import { attachStream } from './http2-hook.js';
import { getTracker } from './tracker.js';
import { isLive } from './switch.js';

const tracker = getTracker();

export interface TrackHow {
  /**
   * A caller that knows the route (instrument, the adapters, sse): its config wins over observeAll's
   * while the stream is pending. observeAll passes false.
   */
  specific: boolean;
  /** The caller runs the stream's handler and will report when it settles (`tracker.handlerSettled`). */
  settles?: boolean;
}

/**
 * The one entry that every caller — `instrument()`, the Express, Fastify and Koa adapters, `sse()` and
 * `observeAll()` — uses to start tracking a response, so an option means the same everywhere: attach
 * the tracker, remember the active context as the span's parent, and note a handler that has yet to
 * settle. The handler then runs through `inStream()` (or the rest of the dispatch after `enterStream`),
 * which ties its async resources to the stream when `trackAsync` is on.
 */
export function track(req: IncomingMessage, res: ServerResponse, config: StreamConfig, how: TrackHow): StreamState | undefined {
  // Set up before the last shutdown(): the response passes through untracked (src/core/switch.ts).
  if (!isLive(config)) return undefined;
  // An HTTP/2 `stream` event handler is called as (stream, headers, flags, rawHeaders).
  const s = isServerStream(req) ? attachStream(req, res as never, config, how.specific) : attach(req, res, config, how.specific);
  if (s === undefined) return undefined;
  try {
    if (how.specific) s.parentContext = context.active();
    if (how.settles === true) tracker.handlerRuns(s);
  } catch (err) {
    tracker.fault('tracker', err);
  }
  return s;
}

/** Runs the stream's handler (or the rest of a middleware chain) in the stream's context (trackAsync). */
export function inStream<T>(s: StreamState, fn: (...args: unknown[]) => T, thisArg: unknown, args: ArrayLike<unknown>): T {
  const a = tracker.asyncContext;
  return a === null || a.wants?.(s) === false ? fn.apply(thisArg, args as unknown[]) : a.run(s, fn, thisArg, args);
}

/**
 * True when the handler must run through `inStream()` (trackAsync or CPU labels for this stream); false when
 * `inStream()` would only call it, and the caller calls it itself (one frame fewer under the handler).
 */
export function needsContext(s: StreamState): boolean {
  const a = tracker.asyncContext;
  return a !== null && a.wants?.(s) !== false;
}

/** The rest of this synchronous dispatch, and what it schedules, runs in the stream's context (trackAsync). */
export function enterInStream(s: StreamState): void {
  tracker.asyncContext?.enter(s);
}
