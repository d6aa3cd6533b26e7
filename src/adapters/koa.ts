import type { IncomingMessage, ServerResponse } from 'node:http';
import { context } from '@opentelemetry/api';
import type { InstrumentOptions } from '../types.js';
import { resolveConfig } from '../config.js';
import { attach, markError, settleHandler } from '../response-hook.js';
import { kRoute } from '../routes.js';

interface KoaContextLike {
  req: IncomingMessage;
  res: ServerResponse;
  _matchedRoute?: string | RegExp;
  routePath?: string;
}

/**
 * Koa middleware: `app.use(streamscopeKoa(options))`, first in the chain. The `route` label is the
 * @koa/router template (`ctx._matchedRoute`), known once the router has matched; Koa writes the body
 * after the middleware chain settles, so the label is in place before the stream opens.
 */
export function streamscopeKoa(options: InstrumentOptions = {}): (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void> {
  const config = resolveConfig(options);
  return async function streamscopeMiddleware(ctx, next) {
    const s = attach(ctx.req, ctx.res, config, true);
    if (s !== undefined) {
      s.parentContext = context.active();
      s.handlerSettled = false;
    }
    try {
      await next();
    } catch (err) {
      if (s !== undefined) markError(s);
      throw err;
    } finally {
      const matched = ctx.routePath ?? ctx._matchedRoute;
      if (typeof matched === 'string' && typeof config.route !== 'string') (ctx.req as IncomingMessage & { [kRoute]?: string })[kRoute] = matched;
      if (s !== undefined) settleHandler(s);
    }
  };
}

export default streamscopeKoa;
