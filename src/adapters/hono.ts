import type { IncomingMessage, ServerResponse } from 'node:http';
import { stream as honoStream, streamSSE as honoStreamSSE, streamText as honoStreamText } from 'hono/streaming';
import type { InstrumentOptions } from '../types.js';
import { resolveConfig } from '../setup.js';
import { inStream, track } from '../core/track.js';
import { kRoute } from '../core/routes.js';
import { getTracker } from '../core/tracker.js';
import { invalidArg, warn } from '../errors.js';
import type { StreamConfig, StreamState } from '../core/stream-state.js';

const tracker = getTracker();

/** What @hono/node-server hands to `fetch` as its second argument (Hono's `c.env`). */
interface NodeBindings {
  incoming?: IncomingMessage;
  outgoing?: ServerResponse;
}

/** The parts of Hono's `Context` streamscope reads (structural: no import of hono). */
export interface HonoContextLike {
  env?: unknown;
  req: { routePath?: string; path?: string };
}

let warned = false;

function bindings(env: unknown): NodeBindings | undefined {
  if (env === null || typeof env !== 'object') return undefined;
  const { incoming, outgoing } = env as NodeBindings;
  if (incoming === undefined || outgoing === undefined || typeof (outgoing as { write?: unknown }).write !== 'function') return undefined;
  return { incoming, outgoing };
}

function noNodeResponse(): void {
  if (warned) return;
  warned = true;
  warn('STREAMSCOPE_HONO_NO_NODE_RESPONSE');
}

/** The one entry every adapter uses (src/core/track.ts), so an option means the same here as elsewhere. */
function trackNode(b: NodeBindings, config: StreamConfig, settles: boolean): StreamState | undefined {
  return track(b.incoming as IncomingMessage, b.outgoing as ServerResponse, config, { specific: true, settles });
}

/**
 * Hono middleware: `app.use(streamscope())`, first, on an app served by `@hono/node-server`. Every
 * streaming response (`streamSSE`, `stream`, `streamText`, any `Response` with a `ReadableStream` body)
 * is tracked on the Node.js response that @hono/node-server writes it into, HTTP/1.1 or HTTP/2. The
 * `route` label is the template of the route that answered (`/sse/:room`), read after the handler ran
 * and before the body is written, never the raw URL.
 */
export function streamscope(options: InstrumentOptions = {}): (c: HonoContextLike, next: () => Promise<void>) => Promise<void> {
  const config = resolveConfig(options);
  return async function streamscopeMiddleware(c, next) {
    const b = bindings(c.env);
    let s: StreamState | undefined;
    if (b === undefined) noNodeResponse();
    else s = trackNode(b, config, true);
    try {
      // The rest of the chain runs in the stream's context (trackAsync), as under the other adapters.
      await (s === undefined ? next() : inStream(s, next, undefined, []));
    } finally {
      if (s !== undefined) tracker.handlerSettled(s);
      if (b !== undefined && typeof config.route !== 'string') {
        try {
          // After next(), Hono's route index points at the handler that answered: its path is the template.
          const template = c.req.routePath;
          if (typeof template === 'string' && template !== '' && template !== '*' && template !== '/*') {
            (b.incoming as IncomingMessage & { [kRoute]?: string })[kRoute] = template;
          }
        } catch (err) {
          tracker.fault('route', err);
        }
      }
    }
  };
}

/**
 * A fetch-style handler (`(request, env) => Response`) served by `@hono/node-server` without Hono's
 * router: `serve({ fetch: instrumentFetch(handler) })`. Its streaming responses are tracked like any
 * other; the route is `options.route` or the folded path.
 */
export function instrumentFetch<F extends (request: Request, env?: unknown, ...rest: never[]) => unknown>(fetch: F, options: InstrumentOptions = {}): F {
  if (typeof fetch !== 'function') throw invalidArg('instrumentFetch(fetch)', 'fetch', 'a function');
  const config = resolveConfig(options);
  const wrapped = function (this: unknown, request: Request, env?: unknown): unknown {
    const b = bindings(env);
    const s = b === undefined ? undefined : trackNode(b, config, false);
    if (b === undefined) noNodeResponse();
    // eslint-disable-next-line prefer-rest-params
    const args = arguments as unknown as Parameters<F>;
    return s === undefined ? fetch.apply(this, args) : inStream(s, fetch as unknown as (...a: unknown[]) => unknown, this, args);
  };
  return wrapped as unknown as F;
}

/**
 * A streaming callback of Hono's helpers threw: the stream's outcome is `error`. Hono's helpers catch the
 * callback's error themselves (they log it, or call `onError`, and end the body normally), so this is the
 * only place that knows. Works wherever the response is tracked: the middleware, instrumentFetch, register.
 */
function failed(c: HonoContextLike, err: unknown): void {
  // Hono's stream() treats a throw of undefined as no error; so does this
  if (err === undefined) return;
  try {
    const b = bindings(c.env);
    const s = b === undefined ? undefined : tracker.stateOf(b.outgoing as ServerResponse);
    if (s !== undefined) tracker.markError(s);
  } catch (e) {
    tracker.fault('tracker', e);
  }
}

type Helper = (c: HonoContextLike, cb: (api: unknown) => Promise<void>, onError?: unknown) => Response;

/** Hono's helper, with its callback watched: a throw marks the stream `error`, then goes on to Hono unchanged. */
function watched<H>(helper: H): H {
  const w: Helper = (c, cb, onError) =>
    (helper as unknown as Helper)(
      c,
      async (api) => {
        try {
          await cb(api);
        } catch (err) {
          failed(c, err);
          throw err;
        }
      },
      onError,
    );
  return w as unknown as H;
}

/**
 * Hono's `streamSSE`, `stream` and `streamText` (same arguments, same behaviour) that also record a callback
 * that throws as outcome `error`. Hono's own helpers catch that error and end the body normally, so with
 * them a mid-stream failure is counted `completed`: import these from `streamscope/hono` instead.
 */
export const streamSSE: typeof honoStreamSSE = watched(honoStreamSSE);
export const stream: typeof honoStream = watched(honoStream);
export const streamText: typeof honoStreamText = watched(honoStreamText);

/** @deprecated Use `streamscope` (the same function): every adapter's own way in is named `streamscope` (docs/instrument.md, "Adapters"). */
export const streamscopeHono = streamscope;

export default streamscope;
