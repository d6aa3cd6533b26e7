import type { IncomingMessage } from 'node:http';
import { invalidOption } from '../../errors.js';

/** Per-client rate limit on opening streams. */
export interface RateLimitOptions {
  /** Streams a client may open at once after being idle (bucket size). */
  burst: number;
  /** Tokens added per second. */
  perSecond: number;
  /** The client key; default the socket's remote address. */
  key?: (req: IncomingMessage) => string;
  /** Distinct clients remembered (least recently seen are forgotten first); default 10000. */
  maxClients?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

function defaultKey(req: IncomingMessage): string {
  return req.socket?.remoteAddress ?? '';
}

/**
 * A token bucket per client key, refilled lazily on each take (no timers). Memory is bounded by
 * `maxClients`; a forgotten client starts again with a full bucket, which errs on the side of serving.
 */
export class TokenBuckets {
  readonly burst: number;
  readonly perMs: number;
  readonly keyOf: (req: IncomingMessage) => string;
  readonly maxClients: number;
  private readonly buckets = new Map<string, Bucket>();
  private readonly now: () => number;

  constructor(options: RateLimitOptions, now: () => number = performance.now.bind(performance)) {
    if (options === null || typeof options !== 'object') throw invalidOption('rateLimit', 'an object', options);
    const { burst, perSecond } = options;
    if (typeof burst !== 'number' || !(burst >= 1) || !Number.isFinite(burst)) throw invalidOption('rateLimit.burst', 'a number >= 1', burst);
    if (typeof perSecond !== 'number' || !(perSecond > 0) || !Number.isFinite(perSecond)) {
      throw invalidOption('rateLimit.perSecond', 'a positive number', perSecond);
    }
    if (options.key !== undefined && typeof options.key !== 'function') throw invalidOption('rateLimit.key', 'a function', options.key);
    const maxClients = options.maxClients ?? 10000;
    if (!Number.isInteger(maxClients) || maxClients < 1) throw invalidOption('rateLimit.maxClients', 'a positive integer', maxClients);
    this.burst = burst;
    this.perMs = perSecond / 1000;
    this.keyOf = options.key ?? defaultKey;
    this.maxClients = maxClients;
    this.now = now;
  }

  /** Takes one token for `key`: 0 when granted, else the seconds to wait before one is available. */
  take(key: string): number {
    const now = this.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.maxClients) {
        const oldest = this.buckets.keys().next().value as string;
        this.buckets.delete(oldest);
      }
      b = { tokens: this.burst, at: now };
    } else {
      this.buckets.delete(key); // re-insert: the Map's order is least recently seen first
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perMs);
      b.at = now;
    }
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perMs / 1000));
  }

  get size(): number {
    return this.buckets.size;
  }
}
