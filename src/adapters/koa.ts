import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InstrumentOptions } from '../types.js';
import { resolveConfig } from '../setup.js';
import { getTracker } from '../core/tracker.js';
import { inStream, track } from '../core/track.js';
import { kRoute } from '../core/routes.js';

const tracker = getTracker();

/** The parts of a Koa context streamscope reads (structural: the adapter's types need no koa import). */
export interface KoaContextLike {
  req: IncomingMessage;
  res: ServerResponse;
  _matchedRoute?: string | RegExp;
  routePath?: string;
}

/**
 * Koa middleware: `app.use(streamscope(options))`, first in the chain. The `route` label is the
 * @koa/router template (`ctx._matchedRoute`), known once the router has matched; Koa writes the body
 * after the middleware chain settles, so the label is in place before the stream opens.
 */
export function streamscope(options: InstrumentOptions = {}): (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void> {
  const config = resolveConfig(options);
  return async function streamscopeMiddleware(ctx, next) {
    const s = track(ctx.req, ctx.res, config, { specific: true, settles: true });
    try {
      // The rest of the chain runs in the stream's context (trackAsync).
      await (s === undefined ? next() : inStream(s, next, undefined, []));
    } catch (err) {
      if (s !== undefined) tracker.markError(s);
      throw err;
    } finally {
      const matched = ctx.routePath ?? ctx._matchedRoute;
      if (typeof matched === 'string' && typeof config.route !== 'string') (ctx.req as IncomingMessage & { [kRoute]?: string })[kRoute] = matched;
      if (s !== undefined) tracker.handlerSettled(s);
    }
  };
}

/** @deprecated Use `streamscope` (the same function): every adapter's own way in is named `streamscope` (docs/instrument.md, "Adapters"). */
export const streamscopeKoa = streamscope;

export default streamscope;
