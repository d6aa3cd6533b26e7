import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InstrumentOptions } from './types.js';
import { resolveConfig } from './setup.js';
import { inStream, needsContext, track, type TrackHow } from './core/track.js';
import { getTracker } from './core/tracker.js';
import { invalidArg } from './errors.js';

const tracker = getTracker();
import { kInstrumented } from './core/symbols.js';
import type { StreamState } from './core/stream-state.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Handler = (this: any, req: IncomingMessage, res: ServerResponse, ...rest: any[]) => unknown;

/** How instrument() tracks: its route is specific, and it reports when the handler settles (one object, not one per request). */
const HOW: TrackHow = Object.freeze({ specific: true, settles: true });

function failed(this: StreamState): void {
  tracker.markError(this);
  tracker.handlerSettled(this);
}

function settleHandler(s: StreamState): void {
  tracker.handlerSettled(s);
}

/**
 * What `instrument()` takes: a `(req, res, ...rest)` handler whose request and response are node:http's or a
 * framework's that extend them (Express's `Request`/`Response`, Connect's). Written as a method so that a
 * handler typed with a framework's own request type fits (methods compare their parameters both ways).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type HttpHandler = { handler(this: any, req: IncomingMessage, res: ServerResponse, ...rest: any[]): unknown }['handler'];

/**
 * Wraps a `(req, res, ...rest)` handler (node:http, Express, Connect) so that every streaming
 * response it writes is tracked. Returns a function of the same shape. Idempotent: wrapping an
 * instrumented handler returns it unchanged. The handler's own errors pass through unchanged.
 *
 * Generic over the handler: an inline handler takes its types from where the result is used
 * (`app.get('/e/:id', instrument(async (req, res) => res.json(req.params.id)))` gets Express's `Request`
 * with the route's params, `Response` and `next`), and node:http's (`IncomingMessage`, `ServerResponse`)
 * when nothing says otherwise. (The type parameter has no default on purpose: TypeScript then infers it
 * from the contextual type of a generic call such as `app.get()`.)
 */
export function instrument<H extends HttpHandler>(handler: H, options?: InstrumentOptions): H;
/** Any other handler shape, typed by hand: HTTP/2's compatibility API, a `stream` event's `(stream, headers)`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function instrument<H extends (this: any, ...args: any[]) => unknown>(handler: H, options?: InstrumentOptions): H;
export function instrument<H extends Handler>(handler: H, options: InstrumentOptions = {}): H {
  if (typeof handler !== 'function') throw invalidArg('instrument(handler)', 'handler', 'a function');
  if ((handler as unknown as Record<symbol, unknown>)[kInstrumented] !== undefined) return handler;
  const config = resolveConfig(options);

  const wrapped = function (this: unknown, req: IncomingMessage, res: ServerResponse): unknown {
    let s: StreamState | undefined;
    if (req !== null && typeof req === 'object' && res !== null && typeof res === 'object') {
      s = track(req, res, config, HOW);
    }
    // eslint-disable-next-line prefer-rest-params
    const args = arguments as unknown as Parameters<H>;
    if (s === undefined) return handler.apply(this, args);
    let ret: unknown;
    try {
      // called here when no context is needed: the handler's caller is this function, as without streamscope
      // but for one frame (a stack captured at its writeHead keeps its frames and the dispatch's, not ours)
      ret = needsContext(s) ? inStream(s, handler as (...a: unknown[]) => unknown, this, args) : handler.apply(this, args);
    } catch (err) {
      failed.call(s);
      throw err;
    }
    if (ret !== null && typeof ret === 'object' && typeof (ret as Promise<unknown>).then === 'function') {
      try {
        (ret as Promise<unknown>).then(settleHandler.bind(null, s), failed.bind(s));
      } catch (err) {
        tracker.fault('tracker', err);
      }
    } else {
      settleHandler(s);
    }
    return ret;
  };
  Object.defineProperty(wrapped, 'length', { value: handler.length });
  Object.defineProperty(wrapped, 'name', { value: handler.name || 'instrumented' });
  Object.defineProperty(wrapped, kInstrumented, { value: handler });
  return wrapped as unknown as H;
}
