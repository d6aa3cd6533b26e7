import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InstrumentOptions } from '../types.js';
import { resolveConfig } from '../setup.js';
import { inStream, track } from '../core/track.js';

import type { NextFunction, Request, Response } from 'express';
import { instrument as coreInstrument } from '../instrument.js';

/**
 * `instrument()` with Express's types: a handler gets Express's `Request`, `Response` and `next` wherever it
 * is written, also on its own (`const h = instrument(async (req, res) => res.json(req.params.id))`);
 * `req.params` is then `ParamsDictionary` (pass `instrument<{ id: string }>(…)` for exact ones; inside
 * `app.get('/e/:id', …)`, `streamscope`'s generic `instrument` takes the route's own params). Same function as
 * `streamscope`'s `instrument`; node:http handlers are accepted too.
 */
export interface ExpressInstrument {
  <
    P = Request['params'],
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    ResBody = any,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    ReqBody = any,
    ReqQuery = Request['query'],
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    Locals extends Record<string, any> = Record<string, any>,
    R = unknown,
  >(
    handler: (req: Request<P, ResBody, ReqBody, ReqQuery, Locals>, res: Response<ResBody, Locals>, next: NextFunction) => R,
    options?: InstrumentOptions,
  ): (req: Request<P, ResBody, ReqBody, ReqQuery, Locals>, res: Response<ResBody, Locals>, next: NextFunction) => R;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  <H extends (this: any, req: any, res: any, ...rest: any[]) => unknown>(handler: H, options?: InstrumentOptions): H;
}

export const instrument: ExpressInstrument = coreInstrument as ExpressInstrument;

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
