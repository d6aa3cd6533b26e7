import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InstrumentOptions } from '../types.js';
import { resolveConfig } from '../setup.js';
import { promote } from '../core/response-hook.js';
import { Phase } from '../core/stream-state.js';
import { watchBody } from '../core/above.js';
import { getTracker } from '../core/tracker.js';
import { inStream, track } from '../core/track.js';
import { kRoute } from '../core/routes.js';

const tracker = getTracker();

/** The parts of a Fastify instance streamscope uses (structural: the adapter's types need no fastify import). */
export interface FastifyLike {
  addHook(name: string, fn: (...args: never[]) => unknown): unknown;
}
interface FastifyRequestLike {
  raw: IncomingMessage;
  routeOptions?: { url?: string };
  routerPath?: string;
}
interface FastifyReplyLike {
  raw: ServerResponse;
  getHeader?(name: string): unknown;
}

const STREAMY_TYPE = /^\s*(text\/event-stream|application\/x-ndjson)/i;

/**
 * Fastify plugin: `await app.register(streamscope, options)`. Tracks every streaming reply of
 * the app with the route template (`request.routeOptions.url`) as the `route` label. Not encapsulated
 * (like fastify-plugin does), so it sees every route.
 */
export function streamscope(fastify: FastifyLike, options: InstrumentOptions, done: (err?: Error) => void): void {
  let config;
  try {
    const { ...opts } = options ?? {};
    config = resolveConfig(opts);
  } catch (err) {
    done(err as Error);
    return;
  }
  const cfg = config;
  fastify.addHook('onRequest', ((request: FastifyRequestLike, reply: FastifyReplyLike, next: () => void) => {
    const raw = request.raw as IncomingMessage & { [kRoute]?: string };
    const url = request.routeOptions?.url ?? request.routerPath;
    if (typeof url === 'string' && typeof cfg.route !== 'string') raw[kRoute] = url;
    const s = track(raw, reply.raw, cfg, { specific: true });
    if (s === undefined) next();
    else inStream(s, next, undefined, []);
  }) as never);
  // The handler runs from this hook's callback: in the stream's context (trackAsync), whatever async
  // steps (body parsing) came between onRequest and here.
  fastify.addHook('preHandler', ((_request: FastifyRequestLike, reply: FastifyReplyLike, next: () => void) => {
    const s = tracker.stateOf(reply.raw);
    if (s === undefined) next();
    else inStream(s, next, undefined, []);
  }) as never);
  // A stream payload (`reply.send(stream)`) of an event-stream or NDJSON type is a stream from here: it opens
  // now, not at its first byte out (which a compression plugin may hold back), and the chunks the handler
  // gives it are counted above whatever is piped between it and the response (src/core/above.ts).
  fastify.addHook('onSend', ((_request: FastifyRequestLike, reply: FastifyReplyLike, payload: unknown, next: (err: null, p: unknown) => void) => {
    try {
      const s = tracker.stateOf(reply.raw);
      if (s !== undefined && payload !== null && typeof payload === 'object' && typeof (payload as { pipe?: unknown }).pipe === 'function') {
        const type = reply.getHeader?.('content-type');
        if (typeof type === 'string' && STREAMY_TYPE.test(type)) {
          if (s.phase === Phase.Pending) promote(s);
          if (s.phase === Phase.Open) watchBody(s, payload);
        }
      }
    } catch (err) {
      tracker.fault('tracker', err);
    }
    next(null, payload);
  }) as never);
  fastify.addHook('onError', ((_request: FastifyRequestLike, reply: FastifyReplyLike, _error: unknown, next: () => void) => {
    const s = tracker.stateOf(reply.raw);
    if (s !== undefined) tracker.markError(s);
    next();
  }) as never);
  done();
}

// What fastify-plugin does: no encapsulation, a display name.
(streamscope as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
(streamscope as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = 'streamscope';

/** @deprecated Use `streamscope` (the same function): every adapter's own way in is named `streamscope` (docs/instrument.md, "Adapters"). */
export const streamscopeFastify = streamscope;

export default streamscope;
