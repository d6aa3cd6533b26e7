/**
 * HTTP/2 specifics, kept out of the HTTP/1 path. Two shapes of HTTP/2 server code are tracked:
 *
 * - the compatibility API (`Http2ServerRequest`/`Http2ServerResponse`, what `createServer(handler)`
 *   and frameworks on it see): the response is patched like an HTTP/1 `ServerResponse`, and its
 *   underlying `ServerHttp2Stream` is kept on the state (`s.h2`) because the response itself does not
 *   say whether the peer reset the stream (Node 20: `writableFinished` is true after a client's
 *   RST_STREAM, `destroyed` is undefined);
 * - `stream` events (`server.on('stream', (stream, headers) => stream.respond() …)`): the
 *   `ServerHttp2Stream` is patched directly (`write`, `end`, `respond`, `destroy`, `close`).
 *
 * Nothing here is imported by the HTTP/1 per-write path except `h2Gone`, one property read.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Phase, type StreamState } from './stream-state.js';
import { getTracker } from './tracker.js';
import { serverCut, socketTimedOut } from './outcome.js';
import { kH2Orig, kH2State } from './symbols.js';

const tracker = getTracker();

/** The parts of a `ServerHttp2Stream` streamscope reads. */
export interface H2StreamLike {
  readonly destroyed: boolean;
  readonly aborted: boolean;
  readonly rstCode: number | undefined;
  readonly closed: boolean;
  readonly writableNeedDrain?: boolean;
  readonly session?: { destroyed?: boolean } | undefined;
  respond(headers?: OutgoingHttpHeaders, options?: unknown): void;
  close(code?: number, cb?: () => void): void;
  destroy(err?: Error): unknown;
  on(event: string, fn: (...a: unknown[]) => void): unknown;
}

type Watched = H2StreamLike & {
  [kH2State]?: StreamState;
  [kH2Orig]?: { close: H2StreamLike['close']; destroy: H2StreamLike['destroy'] };
};

/**
 * Called when a tracked HTTP/2 response opens as a stream: patches the stream's `close` and `destroy`
 * so that a cut the server makes is told from a peer's reset, and listens for its `timeout`.
 * Node itself destroys the stream after a peer's RST_STREAM (then `closed` is already set) and when the
 * session goes (then the session is `destroyed`): those are not the server's doing.
 */
export function watchH2(s: StreamState, st: H2StreamLike): void {
  const w = st as Watched;
  if (w[kH2Orig] !== undefined) {
    w[kH2State] = s;
    return;
  }
  w[kH2State] = s;
  w[kH2Orig] = { close: st.close, destroy: st.destroy };
  w.close = patchedClose;
  w.destroy = patchedStreamDestroy;
  st.on('timeout', onH2Timeout);
}

/** The server closes or destroys the stream itself (not after a peer's reset, not with its session): outcome `error`. */
function cutByServer(w: Watched, err: boolean): void {
  const s = w[kH2State];
  if (s === undefined || s.phase !== Phase.Open || s.clientClosed || w.closed || w.session?.destroyed === true) return;
  serverCut(s, err);
}

function patchedClose(this: Watched, code?: number, _cb?: () => void): void {
  try {
    cutByServer(this, code !== undefined && code !== 0);
  } catch (err) {
    tracker.fault('tracker', err);
  }
  // eslint-disable-next-line prefer-rest-params
  return (this[kH2Orig] as { close: H2StreamLike['close'] }).close.apply(this, arguments as unknown as [number, () => void]);
}

function patchedStreamDestroy(this: Watched, error?: Error): unknown {
  try {
    cutByServer(this, error !== undefined && error !== null);
  } catch (err) {
    tracker.fault('tracker', err);
  }
  // eslint-disable-next-line prefer-rest-params
  return (this[kH2Orig] as { destroy: H2StreamLike['destroy'] }).destroy.apply(this, arguments as unknown as [Error]);
}

function onH2Timeout(this: Watched): void {
  const s = this[kH2State];
  if (s !== undefined) socketTimedOut(s);
}

/** A `ServerHttp2Stream` (what a `stream` event hands over), recognised without loading node:http2. */
export function isServerStream(x: unknown): x is H2StreamLike {
  if (x === null || typeof x !== 'object') return false;
  const o = x as Record<string, unknown>;
  return typeof o.respond === 'function' && typeof o.pushStream === 'function' && 'session' in o;
}

/** The `ServerHttp2Stream` under an `Http2ServerResponse`, or null for anything else (HTTP/1 responses). */
export function h2StreamOf(res: object): H2StreamLike | null {
  const st = (res as { stream?: unknown }).stream;
  return isServerStream(st) ? st : null;
}

/**
 * Did the stream end the way the server meant it to? A peer's RST_STREAM (any code) or a lost session
 * leaves `aborted` set or a non-zero `rstCode`; a normal end leaves neither. (Server-side cuts are seen
 * earlier, through the patched `destroy`/`close`.)
 */
export function h2Finished(st: H2StreamLike): boolean {
  return !st.aborted && (st.rstCode === undefined || st.rstCode === 0);
}

/** Is the stream gone? `Http2ServerResponse` has no `destroyed` on Node 20 and 24: ask its stream. */
export function h2Gone(st: H2StreamLike): boolean {
  return st.destroyed;
}

/**
 * `writableNeedDrain` of a response: `Http2ServerResponse` on Node 20 lacks it (undefined), so
 * backpressure would never be seen; read it from the stream then.
 */
export function needsDrain(res: { writableNeedDrain?: boolean; stream?: unknown }): boolean {
  const v = res.writableNeedDrain;
  if (typeof v === 'boolean') return v;
  const st = h2StreamOf(res);
  return st !== null ? st.writableNeedDrain === true : false;
}

/** Is this an HTTP/2 request (compatibility API)? */
export function isH2Request(req: { httpVersionMajor?: number }): boolean {
  return req.httpVersionMajor === 2;
}

/** Headers HTTP/2 forbids (RFC 9113 §8.2.2); Node throws ERR_HTTP2_INVALID_CONNECTION_HEADERS on them. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** `headers` without the connection-specific ones, for an HTTP/2 response. */
export function h2SafeHeaders(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const k of Object.keys(headers)) if (!CONNECTION_SPECIFIC.has(k.toLowerCase())) out[k] = headers[k];
  return out;
}

/** The request-shaped view of a `stream` event's headers: what the route and method are read from. */
export interface H2RequestLike {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  httpVersionMajor: 2;
}

export function requestOf(headers: IncomingHttpHeaders | undefined): H2RequestLike {
  const h = headers ?? {};
  const m = h[':method'];
  const p = h[':path'];
  return { method: typeof m === 'string' ? m : 'GET', url: typeof p === 'string' ? p : '/', headers: h, httpVersionMajor: 2 };
}
