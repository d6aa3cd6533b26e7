import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InstrumentOptions } from '../types.js';
import { resolveConfig } from '../config.js';
import { inStream, track } from '../track.js';

export { instrument } from '../instrument.js';

/**
 * Express (4 and 5) / Connect middleware: `app.use(streamscope())` tracks every streaming response
 * of the app. The `route` label comes from the matched route template (`req.baseUrl + req.route.path`),
 * read when the stream opens, never from the raw URL. Use `instrument(handler)` on single routes instead
 * to also see the handler's own errors and settlement.
 */
export function streamscope(options: InstrumentOptions = {}): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void {
  const config = resolveConfig(options);
  return function streamscopeMiddleware(req, res, next) {
    const s = track(req, res, config, { specific: true });
    if (s === undefined) return next();
    inStream(s, next as (...a: unknown[]) => unknown, undefined, []);
  };
}

export default streamscope;
