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

/**
 * One limit (a rate limit's token buckets, or a shedder) as an options object asked for it. Its state is
 * never the options object's: it is an explicit limiter object (`rateLimiter()`), or the one kept for the
 * route (and the same settings, and the same metrics registry), so that options written inline on every
 * request limit exactly as one object declared once does.
 */
export class LimitRule<T> {
  constructor(
    /** The state when it is known without the request: an explicit limiter, or a fixed `route` string. */
    private readonly fixed: T | null,
    private readonly table: Map<string, unknown>,
    private readonly prefix: string,
    private readonly make: () => T,
  ) {}

  /** The state that counts this request: by its route label when the route is not a fixed string. */
  of(route: RouteOption | undefined, req: IncomingMessage, res: ServerResponse): T {
    return this.fixed ?? this.forRoute(routeOf(route, req, res));
  }

  forRoute(route: string): T {
    let k = this.prefix + route;
    // bounded like the route label: past MAX_LIMITED_ROUTES states, new routes share one
    if (this.table.size >= MAX_LIMITED_ROUTES && !this.table.has(k)) k = this.prefix + '__other__';
    let v = this.table.get(k) as T | undefined;
    if (v === undefined) {
      v = this.make();
      this.table.set(k, v);
    }
    return v;
  }
}

export interface Limits {
  rate: LimitRule<TokenBuckets> | null;
  /** The client key of this options object's `rateLimit.key` (or the explicit limiter's). */
  keyOf: ((req: IncomingMessage) => string) | null;
  shed: LimitRule<Shedder> | null;
}

const MAX_LIMITED_ROUTES = 1000;

/** Limit state per metrics registry (one app's instrumentation), then per kind + settings + route. */
const tables = new WeakMap<object, Map<string, unknown>>();
const NO_REGISTRY = {};

function tableOf(scope: object | null): Map<string, unknown> {
  const k = scope ?? NO_REGISTRY;
  let t = tables.get(k);
  if (t === undefined) {
    t = new Map();
    tables.set(k, t);
  }
  return t;
}

/**
 * Resolves `rateLimit` and `shed` of one options object. `scope` is the metrics set (registry) the options
 * report to; `route` the options' route: a string fixes the state at once, else it is looked up per request.
 */
export function resolveLimits(
  rateLimit: RateLimitOptions | RateLimiter | undefined,
  shed: ShedOptions | undefined,
  route: RouteOption | undefined,
  scope: object | null,
): Limits {
  const table = tableOf(scope);
  let rate: LimitRule<TokenBuckets> | null = null;
  let keyOf: ((req: IncomingMessage) => string) | null = null;
  if (rateLimit instanceof TokenBuckets) {
    rate = new LimitRule(rateLimit, table, '', () => rateLimit);
    keyOf = rateLimit.keyOf;
  } else if (rateLimit !== undefined) {
    // not made by rateLimiter(): options (validated now; an object merely shaped like a limiter fails here)
    const opts = rateLimit as RateLimitOptions;
    const first = new TokenBuckets(opts); // validates now
    const prefix = `rate\0${first.burst}\0${first.perMs}\0${first.maxClients}\0`;
    const make = (): TokenBuckets => new TokenBuckets(opts);
    const r = new LimitRule(null, table, prefix, make);
    rate = typeof route === 'string' ? new LimitRule(r.forRoute(route), table, prefix, make) : r;
    keyOf = first.keyOf;
  }
  let sh: LimitRule<Shedder> | null = null;
  if (shed !== undefined) {
    const first = new Shedder(shed); // validates now
    const prefix = `shed\0${first.maxStreams}\0${first.maxHeapBytes}\0${first.maxHeapRatio}\0${first.retryAfterSeconds}\0`;
    const make = (): Shedder => new Shedder(shed);
    const r = new LimitRule(null, table, prefix, make);
    sh = typeof route === 'string' ? new LimitRule(r.forRoute(route), table, prefix, make) : r;
  }
  return { rate, keyOf, shed: sh };
}

/**
 * A rate limiter object (`rateLimiter()`): token buckets per client, shared by every options object given it.
 * Only `rateLimiter()` makes one (an object of this shape from elsewhere is read as `RateLimitOptions`).
 */
export interface RateLimiter {
  /** Streams a client may open at once before it waits for tokens. */
  readonly burst: number;
  /** Milliseconds per token. */
  readonly perMs: number;
  /** Clients tracked at most. */
  readonly maxClients: number;
}

/**
 * A rate limiter to share explicitly: `rateLimit: limiter` in several options objects (routes, a hub) counts
 * their streams in the same token buckets.
 */
export function rateLimiter(options: RateLimitOptions): RateLimiter {
  return new TokenBuckets(options) satisfies RateLimiter;
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
    const shedder = limits.shed === null ? null : limits.shed.of(route, req, res);
    if (shedder !== null && shedder.overloaded()) {
      reason = 'overloaded';
      retryAfter = shedder.retryAfterSeconds;
    } else if (limits.rate !== null && limits.keyOf !== null) {
      const wait = limits.rate.of(route, req, res).take(limits.keyOf(req));
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
