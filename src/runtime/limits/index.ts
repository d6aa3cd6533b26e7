import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MetricsSet } from '../../consumers/metrics.js';
import type { RouteOption } from '../../types.js';
import { resolveRoute } from '../../core/routes.js';
import { getTracker } from '../../core/tracker.js';
import { TokenBuckets, type RateLimitOptions } from './token-bucket.js';
import { Shedder, type ShedOptions } from './shed.js';
import { runtimeStats } from './stats.js';
import { httpError, registry } from '../../errors.js';

export { TokenBuckets, type RateLimitOptions } from './token-bucket.js';
export { Shedder, type ShedOptions } from './shed.js';

export type RejectReason = 'rate_limited' | 'overloaded';

const tracker = getTracker();

export interface Limits {
  buckets: TokenBuckets | null;
  shedder: Shedder | null;
}

export function resolveLimits(rateLimit: RateLimitOptions | undefined, shed: ShedOptions | undefined): Limits {
  return {
    buckets: rateLimit === undefined ? null : new TokenBuckets(rateLimit),
    shedder: shed === undefined ? null : new Shedder(shed),
  };
}

/** The route label of a request that never opens a stream (a rejection, a bad resume). */
export function routeOf(route: RouteOption | undefined, req: IncomingMessage, res: ServerResponse): string {
  try {
    return resolveRoute(route, req, res);
  } catch (err) {
    tracker.fault('route', err);
    return '__unknown__';
  }
}

function refuse(res: ServerResponse, status: number, retryAfter: number, reason: RejectReason): void {
  try {
    if (res.headersSent || res.destroyed) return;
    const { body } = httpError(reason === 'rate_limited' ? 'STREAMSCOPE_ERR_RATE_LIMITED' : 'STREAMSCOPE_ERR_OVERLOADED');
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'Retry-After': String(retryAfter),
      'Cache-Control': 'no-store',
    });
    res.end(body);
  } catch (err) {
    tracker.fault('sse', err);
  }
}

/**
 * Applies load shedding, then the per-client rate limit, to a request about to open a stream.
 * On refusal it answers 503 or 429 with `Retry-After`, counts `stream_rejected_total{reason}` and
 * returns the reason; otherwise null. Shedding goes first so an overloaded server spends no tokens.
 */
export function admit(
  limits: Limits,
  req: IncomingMessage,
  res: ServerResponse,
  metrics: MetricsSet | null,
  route: RouteOption | undefined,
): RejectReason | null {
  let reason: RejectReason | null = null;
  let retryAfter = 1;
  try {
    if (limits.shedder !== null && limits.shedder.overloaded()) {
      reason = 'overloaded';
      retryAfter = limits.shedder.retryAfterSeconds;
    } else if (limits.buckets !== null) {
      const wait = limits.buckets.take(limits.buckets.keyOf(req));
      if (wait > 0) {
        reason = 'rate_limited';
        retryAfter = wait;
      }
    }
  } catch (err) {
    tracker.fault('limits', err);
    return null;
  }
  if (reason === null) return null;
  try {
    const stats = runtimeStats();
    (reason === 'rate_limited' ? stats.rateLimited : stats.overloaded).add();
    metrics?.route(routeOf(route, req, res)).rejected(reason).inc();
  } catch (err) {
    tracker.fault('metrics', err);
  }
  refuse(res, registry[reason === 'rate_limited' ? 'STREAMSCOPE_ERR_RATE_LIMITED' : 'STREAMSCOPE_ERR_OVERLOADED'].http, retryAfter, reason);
  return reason;
}
