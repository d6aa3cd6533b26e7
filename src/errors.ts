import { kStreamClosed, kStreamscopeError } from './core/symbols.js';
/**
 * The one registry of every code streamscope and `diag` show their users: errors thrown at the app, process
 * warnings, the bodies of the HTTP error answers of the resilient runtime (`sse()`, the hub, the limits), and
 * the error classes of `diag`. Documented in docs/errors.md, which test/docs-errors.test.ts checks against
 * this table. Codes are never reused. Classes are recognised across duplicate copies of the package.
 *
 * Kinds:
 * - `thrown`: thrown (or rejected) at the caller as a `StreamscopeError`, or a `TypeError` carrying `code`;
 * - `warning`: `process.emitWarning(message, { code })`, once;
 * - `http`: an HTTP answer with this status and the body `{ "error": { "code", "message" } }` (the one style
 *   of every error answer; some add fields, e.g. `nextCursor`);
 * - `exit`: a `diag` error class: one line on stderr, this exit code.
 * An entry may have more than one kind (the hub's store failure is thrown by `publish()` and a 503 for
 * `subscribe()`). `{name}` in a message is filled by `format()`.
 */

export interface ErrorSpec {
  readonly message: string;
  readonly thrown?: 'StreamscopeError' | 'TypeError';
  readonly warning?: true;
  readonly http?: number;
  readonly exit?: number;
}

export const registry = {
  STREAMSCOPE_ERR_INVALID_OPTION: { message: 'An option has a value of the wrong type or range.', thrown: 'StreamscopeError' },
  STREAMSCOPE_ERR_INVALID_ARG: { message: '{fn}: {name} must be {expected}', thrown: 'TypeError' },
  STREAMSCOPE_ERR_HTTP2_STREAM: {
    message: "sse(req, res): HTTP/2 'stream' events are not supported; use the compatibility API (the request and response of a 'request' event)",
    thrown: 'TypeError',
  },
  STREAMSCOPE_ERR_STREAM_CLOSED: { message: 'The client has gone or the stream was closed; stop producing.', thrown: 'StreamscopeError' },
  STREAMSCOPE_ERR_DRAIN_TIMEOUT: { message: 'The client did not drain its buffer within drainTimeoutMs.', thrown: 'StreamscopeError' },
  STREAMSCOPE_ERR_BUFFER_FULL: { message: 'The stream buffered more than maxBufferedBytes.', thrown: 'StreamscopeError' },
  STREAMSCOPE_ERR_INVALID_EVENT_ID: { message: 'malformed Last-Event-ID: expected <ms>-<seq>', http: 400 },
  STREAMSCOPE_ERR_UNKNOWN_EVENT_ID: { message: 'Last-Event-ID {id} is unknown', http: 416 },
  STREAMSCOPE_ERR_EXPIRED_EVENT_ID: { message: 'Last-Event-ID {id} is expired', http: 416 },
  STREAMSCOPE_ERR_RATE_LIMITED: { message: 'too many streams opened', http: 429 },
  STREAMSCOPE_ERR_OVERLOADED: { message: 'server overloaded', http: 503 },
  STREAMSCOPE_ERR_AGENT: { message: 'The diagnostics agent could not start or answer.', warning: true },
  STREAMSCOPE_ERR_INVALID_EVENT: { message: 'An SSE event cannot be framed: its id or event type contains a line break.', thrown: 'StreamscopeError' },
  STREAMSCOPE_ERR_PRODUCER: { message: 'The stream producer failed; the stream ended with an error event.', thrown: 'StreamscopeError' },
  STREAMSCOPE_ERR_REDIS_MISSING: { message: 'redisStore() needs the optional peer dependency ioredis (npm install ioredis).', thrown: 'StreamscopeError' },
  STREAMSCOPE_ERR_HUB_CLOSED: { message: 'The hub or its store was closed.', thrown: 'StreamscopeError', http: 503 },
  STREAMSCOPE_ERR_STORE: {
    message: 'The hub store failed or missed its deadline (for example Redis frozen or unreachable); subscribers get HTTP 503.',
    thrown: 'StreamscopeError',
    http: 503,
  },
  STREAMSCOPE_ERR_MALFORMED_STREAM: {
    message: 'streamscope/client: the event stream cannot be verified (an event without an id, over maxEventLength, or checksums missing or invalid on connections in a row); the client closed.',
    thrown: 'StreamscopeError',
  },
  STREAMSCOPE_ERR_STREAM_REFUSED: {
    message: 'streamscope/client: the server answered with something it cannot resume from (a 4xx other than 408/416/429, or not text/event-stream); the client closed.',
    thrown: 'StreamscopeError',
  },
  STREAMSCOPE_TRACK_ASYNC_UNAVAILABLE: {
    message:
      'trackAsync needs async_hooks.createHook, which this runtime does not provide: dangling_async is off; ' +
      'dangling_stream still uses handler settlement and writes after close.',
    warning: true,
  },
  STREAMSCOPE_HONO_NO_NODE_RESPONSE: {
    message:
      'streamscope/hono: the request has no Node.js response (c.env.outgoing); streams are tracked only when the app is served by @hono/node-server',
    warning: true,
  },
  STREAMSCOPE_DIAG_USAGE: { message: 'diag: bad usage or a refusal the operator can act on (DiagError)', exit: 2 },
  STREAMSCOPE_DIAG_INPUT: { message: 'diag: an input the analyzer cannot use (InputError)', exit: 2 },
} as const satisfies Record<string, ErrorSpec>;

export type RegistryCode = keyof typeof registry;

/** Code → default message of a table. (A function, so that the published type spells out every code and message.) */
function messagesOf<T extends Record<string, ErrorSpec>>(table: T): { readonly [K in keyof T]: T[K]['message'] } {
  return Object.fromEntries(Object.entries(table).map(([k, v]) => [k, v.message])) as { readonly [K in keyof T]: T[K]['message'] };
}

/** Code → default message, for every code of the registry (exported as `errorCodes`). */
export const codes = messagesOf(registry);

/** Every code of the registry (docs/errors.md). */
export type ErrorCode = keyof typeof codes;

/** The message of `code` with `{name}` placeholders filled from `params`. */
export function format(code: RegistryCode, params: Record<string, string | number> = {}): string {
  return registry[code].message.replace(/\{(\w+)\}/g, (m, k: string) => (k in params ? String(params[k]) : m));
}

/** Emits the registry's warning `code` (never throws: instrumentation must not break the app). */
export function warn(code: RegistryCode, message: string = format(code)): void {
  try {
    process.emitWarning(message, { code });
  } catch {
    /* nothing */
  }
}

/** The HTTP status and body of the registry's `code`: the one style of every error answer. */
export function httpError(code: RegistryCode, message: string = format(code), extra?: Record<string, unknown>): { status: number; body: string } {
  const status = (registry[code] as ErrorSpec).http ?? 500;
  return { status, body: JSON.stringify({ error: { code, message, ...extra } }) };
}

/** A `TypeError` with the registry's `code` (for a bad argument: not a function, an unsupported object). */
export function typeError(code: RegistryCode, params?: Record<string, string | number>): TypeError & { code: RegistryCode } {
  const err = new TypeError(format(code, params)) as TypeError & { code: RegistryCode };
  err.code = code;
  return err;
}

export function invalidArg(fn: string, name: string, expected: string): TypeError & { code: RegistryCode } {
  return typeError('STREAMSCOPE_ERR_INVALID_ARG', { fn, name, expected });
}


export class StreamscopeError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? codes[code], options);
    this.name = 'StreamscopeError';
    this.code = code;
    (this as unknown as Record<symbol, boolean>)[kStreamscopeError] = true;
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[kStreamscopeError] === true;
  }
}


/** Rejected by `send()` once the client is gone: the producer should stop. */
export class StreamClosedError extends StreamscopeError {
  constructor(message = 'stream closed: the client has gone or close() was called', options?: { cause?: unknown }) {
    super('STREAMSCOPE_ERR_STREAM_CLOSED', message, options);
    this.name = 'StreamClosedError';
    (this as unknown as Record<symbol, boolean>)[kStreamClosed] = true;
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[kStreamClosed] === true;
  }
}

export function invalidOption(name: string, expected: string, got: unknown): StreamscopeError {
  return new StreamscopeError('STREAMSCOPE_ERR_INVALID_OPTION', `option ${name} must be ${expected}, got ${String(got)}`);
}
