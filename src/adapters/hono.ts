import type { IncomingMessage, ServerResponse } from 'node:http';
import { context } from '@opentelemetry/api';
import type { InstrumentOptions } from '../types.js';
import { resolveConfig } from '../config.js';
import { attach } from '../response-hook.js';
import { kRoute } from '../routes.js';
import { getTracker } from '../tracker.js';
import type { StreamConfig } from '../stream-state.js';

const tracker = getTracker();

/** What @hono/node-server hands to `fetch` as its second argument (Hono's `c.env`). */
interface NodeBindings {
  incoming?: IncomingMessage;
  outgoing?: ServerResponse;
}

/** The parts of Hono's `Context` streamscope reads (structural: no import of hono). */
interface HonoContextLike {
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
  process.emitWarning(
    'streamscope/hono: the request has no Node.js response (c.env.outgoing); streams are tracked only when the app is served by @hono/node-server',
    { code: 'STREAMSCOPE_HONO_NO_NODE_RESPONSE' },
  );
}

function track(b: NodeBindings, config: StreamConfig): void {
  const s = attach(b.incoming as IncomingMessage, b.outgoing as ServerResponse, config, true);
  if (s !== undefined) {
    try {
      s.parentContext = context.active();
    } catch (err) {
      tracker.fault('tracker', err);
    }
  }
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
    if (b === undefined) noNodeResponse();
    else track(b, config);
    try {
      await next();
    } finally {
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
  if (typeof fetch !== 'function') throw new TypeError('instrumentFetch(fetch): fetch must be a function');
  const config = resolveConfig(options);
  const wrapped = function (this: unknown, request: Request, env?: unknown): unknown {
    const b = bindings(env);
    if (b === undefined) noNodeResponse();
    else track(b, config);
    // eslint-disable-next-line prefer-rest-params
    return fetch.apply(this, arguments as unknown as Parameters<F>);
  };
  return wrapped as unknown as F;
}

/** The same middleware under the name the other adapters use (`streamscopeKoa`, `streamscopeFastify`). */
export const streamscopeHono = streamscope;

export default streamscope;
