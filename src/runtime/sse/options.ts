import type { OutgoingHttpHeaders } from 'node:http';
import { h2SafeHeaders } from '../../core/http2.js';
import type { InstrumentOptions } from '../../types.js';
import type { ResolvedConfig } from '../../setup.js';
import { resolveConfig } from '../../setup.js';
import { invalidOption } from '../../errors.js';
import { resolveLimits, type Limits, type RateLimitOptions, type ShedOptions, type RateLimiter } from '../limits/index.js';
import { runtimeStats } from '../limits/stats.js';
import { checkChecksum } from './checksum.js';
import type { EncodeOptions } from './encoder.js';

/** Options of `sse()` (and defaults of a hub's streams). Every InstrumentOptions field applies too. */
export interface SseOptions extends InstrumentOptions {
  /** A comment line after this many ms without a write keeps proxies from closing the stream; 0 turns it off (default 15000). */
  heartbeatMs?: number;
  /**
   * The most bytes one response may hold queued in the process (Node's queue for it, `writableLength`; the
   * same meaning and unit as the instrument() guard of this name). A frame that would queue more cuts the
   * stream so the client can resume later (default 1 MiB). A producer that awaits `send()` never reaches it:
   * `send()` waits for `drain` first.
   */
  maxBufferedBytes?: number;
  /** A `send()` that waited this long for `drain` closes the stuck stream (default 30000). */
  drainTimeoutMs?: number;
  /** Ends the stream after this many ms (outcome `timeout`); default none. */
  timeoutMs?: number;
  /** Sent as `retry:` when the stream opens: the client's reconnection delay. */
  retryMs?: number;
  /** Put the producer's own error message in the `error` event (default false: a generic one). */
  exposeErrors?: boolean;
  /** Extra response headers. */
  headers?: OutgoingHttpHeaders;
  /**
   * Per-client token bucket on opening streams: 429 with Retry-After. The buckets belong to the route (and
   * registry), never to this options object: inline options limit as a shared one does. Pass a
   * `rateLimiter()` to share one limiter between routes explicitly.
   */
  rateLimit?: RateLimitOptions | RateLimiter;
  /** Load shedding: 503 with Retry-After. */
  shed?: ShedOptions;
  /**
   * `'crc32'`: each event carries a CRC-32 of its id, type and data in a comment line that a stock
   * EventSource ignores; `streamscope/client` verifies it (docs/sse.md, "Checksums"). Default: none.
   */
  checksum?: 'crc32';
}

export interface ResolvedSse {
  readonly config: ResolvedConfig;
  readonly route: SseOptions['route'];
  readonly heartbeatMs: number;
  readonly maxBufferedBytes: number;
  readonly drainTimeoutMs: number;
  readonly timeoutMs: number;
  readonly retryFrame: string;
  readonly exposeErrors: boolean;
  readonly headers: OutgoingHttpHeaders;
  /** `headers` without the connection-specific ones HTTP/2 forbids (`Connection`, …). */
  readonly h2Headers: OutgoingHttpHeaders;
  readonly limits: Limits;
  /** How events are framed: `{ checksum: 'crc32' }`, or undefined for plain frames. */
  readonly encode: EncodeOptions | undefined;
}

export const SSE_DEFAULTS = Object.freeze({ heartbeatMs: 15000, maxBufferedBytes: 1024 * 1024, drainTimeoutMs: 30000 });

const BASE_HEADERS: OutgoingHttpHeaders = Object.freeze({
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
});

const cache = new WeakMap<object, ResolvedSse>();
const CRC32: EncodeOptions = Object.freeze({ checksum: 'crc32' });

function num(name: string, v: unknown, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || Number.isNaN(v) || v < min) throw invalidOption(name, `a number >= ${min}`, v);
  return v;
}

/** Validates and resolves an options object once; later calls with the same object are a WeakMap hit. */
export function resolveSse(options: SseOptions = {}): ResolvedSse {
  if (options === null || typeof options !== 'object') throw invalidOption('options', 'an object', options);
  const hit = cache.get(options);
  if (hit !== undefined) return hit;
  // sse() enforces its own maxBufferedBytes (closing with a resumable end); the instrument guard of the same name stays off.
  const config = resolveConfig(options.maxBufferedBytes === undefined ? options : { ...options, maxBufferedBytes: undefined });
  const retryMs = options.retryMs === undefined ? -1 : num('retryMs', options.retryMs, 0, 0);
  if (options.headers !== undefined && (options.headers === null || typeof options.headers !== 'object')) {
    throw invalidOption('headers', 'an object', options.headers);
  }
  const timeoutMs = num('timeoutMs', options.timeoutMs, 0, 1);
  const encode: EncodeOptions | undefined = checkChecksum(options.checksum) ? CRC32 : undefined;
  const headers = options.headers === undefined ? BASE_HEADERS : Object.freeze({ ...BASE_HEADERS, ...options.headers });
  const r: ResolvedSse = Object.freeze({
    config,
    route: options.route,
    heartbeatMs: num('heartbeatMs', options.heartbeatMs, SSE_DEFAULTS.heartbeatMs, 0),
    maxBufferedBytes: num('maxBufferedBytes', options.maxBufferedBytes, SSE_DEFAULTS.maxBufferedBytes, 1),
    drainTimeoutMs: num('drainTimeoutMs', options.drainTimeoutMs, SSE_DEFAULTS.drainTimeoutMs, 1),
    timeoutMs,
    retryFrame: retryMs >= 0 ? `retry: ${Math.floor(retryMs)}\n\n` : '',
    exposeErrors: options.exposeErrors === true,
    headers,
    h2Headers: Object.freeze(h2SafeHeaders(headers)),
    limits: resolveLimits(options.rateLimit, options.shed, options.route, config.metrics),
    encode,
  });
  runtimeStats();
  cache.set(options, r);
  return r;
}
