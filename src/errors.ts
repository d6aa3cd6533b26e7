/**
 * Every error streamscope throws at its user, with a stable code. Documented in docs/errors.md.
 * Codes are never reused. Classes are recognised across duplicate copies of the package.
 */

export const codes = {
  STREAMSCOPE_ERR_INVALID_OPTION: 'An option has a value of the wrong type or range.',
  STREAMSCOPE_ERR_STREAM_CLOSED: 'The client has gone or the stream was closed; stop producing.',
  STREAMSCOPE_ERR_DRAIN_TIMEOUT: 'The client did not drain its buffer within drainTimeoutMs.',
  STREAMSCOPE_ERR_BUFFER_FULL: 'The stream buffered more than maxBufferedBytes.',
  STREAMSCOPE_ERR_INVALID_EVENT_ID: 'A Last-Event-ID is malformed.',
  STREAMSCOPE_ERR_AGENT: 'The diagnostics agent could not start or answer.',
  STREAMSCOPE_ERR_INVALID_EVENT: 'An SSE event cannot be framed: its id or event type contains a line break.',
  STREAMSCOPE_ERR_PRODUCER: 'The stream producer failed; the stream ended with an error event.',
  STREAMSCOPE_ERR_REDIS_MISSING: 'redisStore() needs the optional peer dependency ioredis (npm install ioredis).',
  STREAMSCOPE_ERR_HUB_CLOSED: 'The hub or its store was closed.',
  STREAMSCOPE_ERR_STORE: 'The hub store failed or missed its deadline (for example Redis frozen or unreachable); subscribers get HTTP 503.',
} as const;

export type ErrorCode = keyof typeof codes;

const kStreamscopeError = Symbol.for('streamscope.error');

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

const kStreamClosed = Symbol.for('streamscope.error.stream_closed');

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
