import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InstrumentOptions } from './types.js';
import { resolveConfig } from './setup.js';
import { inStream, track } from './core/track.js';
import { getTracker } from './core/tracker.js';
import { invalidArg } from './errors.js';

const tracker = getTracker();
import { kInstrumented } from './core/symbols.js';
import type { StreamState } from './core/stream-state.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Handler = (this: any, req: IncomingMessage, res: ServerResponse, ...rest: any[]) => unknown;

function failed(this: StreamState): void {
  tracker.markError(this);
  tracker.handlerSettled(this);
}

function settleHandler(s: StreamState): void {
  tracker.handlerSettled(s);
}

/**
 * Wraps a `(req, res, ...rest)` handler (node:http, Express, Connect) so that every streaming
 * response it writes is tracked. Returns a function of the same shape. Idempotent: wrapping an
 * instrumented handler returns it unchanged. The handler's own errors pass through unchanged.
 *
 * Generic over the handler's parameters: an inline handler takes its types from where the result is
 * used (`app.get('/e/:id', instrument(async (req, res) => req.params.id))` gets Express's `Request`
 * and `Response`), and from node:http (`IncomingMessage`, `ServerResponse`) when nothing says otherwise.
 */
export function instrument<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  Rest extends any[] = [],
  R = unknown,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  This = any,
>(handler: (this: This, req: Req, res: Res, ...rest: Rest) => R, options?: InstrumentOptions): (this: This, req: Req, res: Res, ...rest: Rest) => R;
/** Framework handlers whose request and response types extend node's (Express's `Request`, …). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function instrument<H extends (this: any, req: any, res: any, ...rest: any[]) => unknown>(handler: H, options?: InstrumentOptions): H;
export function instrument<H extends Handler>(handler: H, options: InstrumentOptions = {}): H {
  if (typeof handler !== 'function') throw invalidArg('instrument(handler)', 'handler', 'a function');
  if ((handler as unknown as Record<symbol, unknown>)[kInstrumented] !== undefined) return handler;
  const config = resolveConfig(options);

  const wrapped = function (this: unknown, req: IncomingMessage, res: ServerResponse): unknown {
    let s: StreamState | undefined;
    if (req !== null && typeof req === 'object' && res !== null && typeof res === 'object') {
      s = track(req, res, config, { specific: true, settles: true });
    }
    // eslint-disable-next-line prefer-rest-params
    const args = arguments as unknown as Parameters<H>;
    if (s === undefined) return handler.apply(this, args);
    let ret: unknown;
    try {
      ret = inStream(s, handler as (...a: unknown[]) => unknown, this, args);
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
