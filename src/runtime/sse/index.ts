import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { admit } from '../limits/index.js';
import { resolveSse, type SseOptions } from './options.js';
import { kOpen, kState, SseStream } from './stream.js';
import { isServerStream } from '../../core/http2.js';
import { enterInStream } from '../../core/track.js';
import { typeError } from '../../errors.js';
import type { SseStream as PublicSseStream } from './public.js';

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
export function sse(
  reqIn: IncomingMessage | Http2ServerRequest,
  resIn: ServerResponse | Http2ServerResponse,
  options: SseOptions = {},
): PublicSseStream {
  // HTTP/2's compatibility request/response are driven through the same methods (src/core/http2.ts).
  const req = reqIn as IncomingMessage;
  const res = resIn as ServerResponse;
  if (isServerStream(req) || isServerStream(res)) {
    // Nothing to frame onto: a `stream` event has no response object. Say so rather than fail later.
    throw typeError('STREAMSCOPE_ERR_HTTP2_STREAM');
  }
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
