import type { IncomingMessage, ServerResponse } from 'node:http';
import { admit } from '../limits/index.js';
import { resolveSse, type SseOptions } from './options.js';
import { kOpen, kState, SseStream } from './stream.js';
import { enterInStream } from '../track.js';

export { SseStream } from './stream.js';
export { encodeEvent, encodeComment, type SseEvent } from './encoder.js';
export type { SseOptions } from './options.js';

/**
 * Opens a resilient Server-Sent Events stream on `res`: framing, heartbeats, backpressure-aware
 * `send()`, cancellation through `signal`, `timeoutMs`, and the stream is tracked (metrics, span,
 * detectors) with no extra step. With `rateLimit`/`shed` it may refuse (429/503): then the returned
 * stream is already closed and `rejected` says why. Throws only for invalid options (at the first call
 * with a given options object, which is resolved once and cached).
 */
export function sse(req: IncomingMessage, res: ServerResponse, options: SseOptions = {}): SseStream {
  const o = resolveSse(options);
  const rejected = admit(o.limits, req, res, o.config.metrics, o.route);
  const stream = new SseStream(req, res, o, rejected);
  if (rejected === null) {
    stream[kOpen]();
    // The rest of the caller's handler (timers it starts after sse() returns) belongs to the stream
    // (trackAsync), as under instrument(); the stream's own heartbeat and timeout were created before.
    const s = stream[kState];
    if (s !== undefined) enterInStream(s);
  }
  return stream;
}
