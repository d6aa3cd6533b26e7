// From their modules, not the globals: `globalThis.performance` and `globalThis.Buffer` are accessors in Node,
// a getter call on every use on the per-write path.
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import { OutgoingMessage, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { originals, Phase, StreamState, type StreamConfig } from './stream-state.js';
import { getTracker } from './tracker.js';
import { resolveRoute } from './routes.js';
import { kState } from './symbols.js';
import { captureStack } from './stacks.js';
import { h2Finished, h2StreamOf, isServerStream, watchH2 } from './http2.js';
import { closeOutcome, serverCut, socketTimedOut } from './outcome.js';
import { wrapAbove } from './above.js';

/**
 * Attaches the tracker to one response. Shared functions (not closures) replace `write`, `end`,
 * `writeHead` on the instance and forward to the originals; a short buffered response pays one
 * small object and four property stores. Nothing on the prototype is touched, nothing on the socket.
 */

type Res = ServerResponse & { [kState]?: StreamState };

const tracker = getTracker();


type PeerSocket = Socket & { _readableState?: { ended?: boolean } };

/** Errors that say the peer closed or reset the connection (or the network between us failed). */
const PEER_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EHOSTDOWN']);

const STREAMY_TYPE = /^\s*(text\/event-stream|application\/x-ndjson)/i;

/**
 * Starts tracking `res` unless it is tracked already (observeAll and instrument together, or two
 * copies of the package), in which case the newer, more specific config wins while the stream is
 * still pending. Returns the state, or undefined when streamscope failed (counted, never thrown).
 */
export function attach(req: IncomingMessage, res: ServerResponse, config: StreamConfig, specific: boolean): StreamState | undefined {
  try {
    const r = res as Res;
    const existing = r[kState];
    if (existing !== undefined) {
      if (specific && existing.phase === Phase.Pending) existing.config = config;
      return existing;
    }
    const s = new StreamState(req, res, config, performance.now());
    r[kState] = s;
    const stream = isServerStream(res);
    s.orig = originals(res.write, res.end, stream ? null : res.writeHead, res.destroy, res.emit);
    res.write = patchedWrite as ServerResponse['write'];
    res.end = patchedEnd as ServerResponse['end'];
    if (stream) {
      // HTTP/2 `stream` event: the stream itself is the response (its `respond()` is patched in http2-hook.ts).
      s.h2 = res;
    } else {
      res.writeHead = patchedWriteHead as ServerResponse['writeHead'];
      s.h2 = h2StreamOf(res);
    }
    return s;
  } catch (err) {
    tracker.fault('tracker', err);
    return undefined;
  }
}

function byteLength(chunk: unknown, encoding: unknown): number {
  // No encoding given (the usual `res.write(string)`): Buffer.byteLength's own default, UTF-8, without an encoding
  // name for it to look up on every write (getEncodingOps), which passing 'utf8' costs.
  if (typeof chunk === 'string') return typeof encoding === 'string' ? Buffer.byteLength(chunk, encoding as BufferEncoding) : Buffer.byteLength(chunk);
  if (chunk !== null && typeof chunk === 'object' && typeof (chunk as Uint8Array).byteLength === 'number') {
    return (chunk as Uint8Array).byteLength;
  }
  return 0;
}

/** Counts one body write. The clock is read only for the first write and for writes after close. */
function countWrite(s: StreamState, res: Res, chunk: unknown, encoding: unknown): void {
  if (s.clientClosed || gone(s, res)) {
    tracker.wroteAfterClose(s, performance.now());
    return;
  }
  const n = byteLength(chunk, encoding);
  const t = s.totals;
  s.writes++;
  s.bytes += n;
  t.writes++;
  t.bytes += n;
  if (!s.written && s.phase === Phase.Open) tracker.wrote(s);
  if (s.firstWriteAt < 0) {
    s.firstWriteAt = performance.now();
    if (s.phase === Phase.Open) tracker.emit('firstWrite', s);
  }
}

/** Destroyed; an HTTP/2 compatibility response has no `destroyed` (Node 20, 24): its stream says. */
function gone(s: StreamState, res: Res): boolean {
  return res.destroyed === true || (s.h2 !== null && s.h2.destroyed);
}

/**
 * `res.write` of a tracked response. Kept small on purpose: V8 inlines a caller's whole write path within one
 * budget, and every byte of this function takes from what it can inline of Node's own `write()` below it. The
 * common case (an open stream already written to, its client there) is four additions, the stream's counts and its
 * route's running totals (`s.totals`, which a scrape reads); everything else is in `writeSlow` and `writeBlocked`.
 */
function patchedWrite(this: Res, chunk: unknown, encoding?: unknown, _cb?: unknown): boolean {
  const s = this[kState];
  // eslint-disable-next-line prefer-rest-params
  const args = arguments as unknown as Parameters<ServerResponse['write']>;
  if (s === undefined || s.orig === null) return Object.getPrototypeOf(this).write.apply(this, args);
  if (s.phase === Phase.Open && s.writes !== 0 && !s.clientClosed && !gone(s, this)) {
    countCommon(s, byteLength(chunk, encoding));
  } else if (s.phase !== Phase.Discarded) {
    writeSlow(s, this, chunk, encoding);
  }
  // Async resources Node creates inside the write (the Date header cache, socket timers) are not the
  // handler's: the trackAsync hook skips what is created while internalDepth > 0.
  tracker.internalDepth++;
  let ret: boolean;
  try {
    ret = s.orig.write.apply(this, args);
  } finally {
    tracker.internalDepth--;
  }
  if (ret === false && s.phase !== Phase.Discarded) writeBlocked(s, this);
  return ret;
}

/**
 * The common case's bookkeeping, shared by `patchedWrite` and the hub's `directWrite` (one place, so the two cannot
 * drift): the stream's counts, its route's running totals (`s.totals`, which a scrape reads), the sweep's written
 * list. Small enough for V8 to inline into both.
 */
function countCommon(s: StreamState, n: number): void {
  const t = s.totals;
  s.writes++;
  s.bytes += n;
  t.writes++;
  t.bytes += n;
  if (!s.written) tracker.wrote(s);
}

/** A write that is not the common case: pending, first, after close, or under guards. */
function writeSlow(s: StreamState, res: Res, chunk: unknown, encoding: unknown): void {
  try {
    if (s.phase === Phase.Pending && s.stackHolder === undefined && s.config.captureStacks) s.stackHolder = captureStack(patchedWrite);
    countWrite(s, res, chunk, encoding);
    if (s.phase === Phase.Pending && !s.promoteScheduled) {
      s.promoteScheduled = true;
      setImmediate(promoteIfOpen, s);
    }
  } catch (err) {
    tracker.fault('tracker', err);
  }
  // Guard zombieAction 'throw': a write to a stream whose 'close' came before it finished stops its producer
  // (docs/guards.md). Only after 'close': by then pipe()/pipeline() have let go, so a throw never lands in them.
  const guards = s.config.guards;
  if (guards != null && guards.zombieThrow && s.clientClosed) guards.zombieWrite(s);
}

/** `write()` returned false: a blocked episode starts (or goes on). */
function writeBlocked(s: StreamState, res: Res): void {
  if (s.clientClosed || gone(s, res)) return;
  try {
    s.blockedWrites++;
    s.totals.blocked++;
    if (s.blockedSince < 0) {
      s.blockedSince = performance.now();
      if (!s.drainListening && s.h2 !== null) {
        // HTTP/2: only streams that meet backpressure pay for a 'drain' listener; it goes before the app's
        // own, whose drain handler may block again at once. (HTTP/1.1: our `emit` sees it, see patchedEmit.)
        s.drainListening = true;
        res.prependListener('drain', onDrain);
      }
      if (s.phase === Phase.Pending) promote(s);
      else tracker.emit('writeBlocked', s);
    }
    // Guard maxBufferedBytes: checked only on a write that met backpressure, never on the fast path.
    const guards = s.config.guards;
    if (guards != null) guards.blockedWrite(s, res.writableLength);
  } catch (err) {
    tracker.fault('tracker', err);
  }
}

function patchedEnd(this: Res, chunk?: unknown, encoding?: unknown, _cb?: unknown): Res {
  const s = this[kState];
  // eslint-disable-next-line prefer-rest-params
  const args = arguments as unknown as Parameters<ServerResponse['end']>;
  if (s === undefined || s.orig === null) return Object.getPrototypeOf(this).end.apply(this, args);
  if (s.phase !== Phase.Discarded && !s.ended) {
    try {
      s.ended = true;
      if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') countWrite(s, this, chunk, encoding);
      // Ended within the tick of its first write (or never written): a short response, not a stream.
      if (s.phase === Phase.Pending) tracker.discard(s);
    } catch (err) {
      tracker.fault('tracker', err);
    }
  }
  tracker.internalDepth++;
  try {
    return s.orig.end.apply(this, args) as Res;
  } finally {
    tracker.internalDepth--;
  }
}

/** `res.writeHead(statusCode, [reason], [headers])` of a tracked response (no rest array: it forwards `arguments`). */
function patchedWriteHead(this: Res, _statusCode?: unknown, reason?: unknown, headers?: unknown): Res {
  const s = this[kState];
  // eslint-disable-next-line prefer-rest-params
  const args = arguments as unknown as unknown[];
  const orig = s?.orig?.writeHead;
  if (s === undefined || orig == null) return Object.getPrototypeOf(this).writeHead.apply(this, args);
  let ret: Res;
  tracker.internalDepth++;
  try {
    ret = (orig as (...a: unknown[]) => Res).apply(this, args);
  } finally {
    tracker.internalDepth--;
  }
  if (s.phase === Phase.Pending) headWritten(s, this, typeof reason === 'string' ? headers : reason);
  return ret;
}

/** The headers went out while the stream was pending: a streaming Content-Type or chunked encoding opens it. */
function headWritten(s: StreamState, res: Res, headers: unknown): void {
  try {
    if (s.stackHolder === undefined && s.config.captureStacks) s.stackHolder = captureStack(patchedWriteHead);
    if (isStreamy(res, headers)) promote(s);
  } catch (err) {
    tracker.fault('tracker', err);
  }
}

function headerValue(headers: unknown, name: string): unknown {
  if (headers === null || typeof headers !== 'object') return undefined;
  if (Array.isArray(headers)) {
    // [k, v, k, v] or [[k, v], ...]
    for (let i = 0; i < headers.length; i++) {
      const h = headers[i];
      if (Array.isArray(h)) {
        if (String(h[0]).toLowerCase() === name) return h[1];
      } else if (i % 2 === 0 && String(h).toLowerCase() === name) {
        return headers[i + 1];
      }
    }
    return undefined;
  }
  // the usual spelling first (`name` is lower case), then any other case without a key list per response
  const v = (headers as Record<string, unknown>)[name];
  if (v !== undefined) return v;
  for (const k of Object.keys(headers)) if (k.toLowerCase() === name) return (headers as Record<string, unknown>)[k];
  return undefined;
}

/** Content-Type text/event-stream or application/x-ndjson, or an explicit Transfer-Encoding: chunked. */
function isStreamy(res: ServerResponse, headers: unknown): boolean {
  const ct = headerValue(headers, 'content-type') ?? res.getHeader('content-type');
  if (typeof ct === 'string' && (ct.startsWith('text/event-stream') || ct.startsWith('application/x-ndjson') || STREAMY_TYPE.test(ct))) return true;
  const te = headerValue(headers, 'transfer-encoding') ?? res.getHeader('transfer-encoding');
  return typeof te === 'string' && /chunked/i.test(te);
}

function promoteIfOpen(s: StreamState): void {
  try {
    if (s.phase !== Phase.Pending) return;
    const res = s.res;
    if (res === null || res.writableEnded) return tracker.discard(s);
    if (res.destroyed) {
      // Gone before we could call it a stream; if it wrote, it was one that the client cut short.
      promote(s);
      return;
    }
    promote(s);
  } catch (err) {
    tracker.fault('tracker', err);
  }
}

/** The response is a stream: open it in the tracker and its consumers. */
export function promote(s: StreamState): void {
  const res = s.res as Res;
  const req = s.req as IncomingMessage;
  if (!tracker.markOpen(s)) return;
  try {
    s.route = resolveRoute(s.config.route, req, res);
  } catch (err) {
    tracker.fault('route', err);
    s.route = '__unknown__';
  }
  // the methods as they are now (a framework may have replaced one since attach)
  const o = s.orig;
  if (o !== null && (o.destroy !== res.destroy || o.emit !== res.emit)) s.orig = originals(o.write, o.end, o.writeHead, res.destroy, res.emit);
  if ((s.h2 as unknown) !== res) res.destroy = patchedDestroy as ServerResponse['destroy'];
  if (s.h2 === null) {
    // HTTP/1.1: one `emit` of our own sees the response's close, drain and timeout (the server emits its socket's
    // timeout on the response), instead of a listener on the response and two on its socket: no listener array,
    // and the app's listener counts stay its own. Nothing of the socket is touched.
    res.emit = patchedEmit as ServerResponse['emit'];
  } else {
    res.on('close', onClose);
  }
  // A middleware that replaced res.write after streamscope attached (compression): count the writes it is given.
  if (res.write !== (patchedWrite as unknown)) wrapAbove(s, res, patchedWrite);
  // HTTP/2: the stream's own destroy/close/timeout tell who cut it (the session's socket is shared).
  if (s.h2 !== null) watchH2(s, s.h2);
  s.req = null; // the route is resolved: the request is no longer needed
  tracker.opened(s);
  if (gone(s, res) || res.closed) onClose.call(res);
}

function patchedDestroy(this: Res, err?: Error): Res {
  const s = this[kState];
  if (s !== undefined) serverCut(s, Boolean(err));
  const orig = s?.orig?.destroy ?? Object.getPrototypeOf(this).destroy;
  return orig.call(this, err) as Res;
}

/**
 * `res.emit` of an open HTTP/1.1 stream, before the app's listeners (as a listener added first would be): the
 * stream's close, a drain (the app's drain handler may block again at once), and the socket's timeout, which
 * node:http's server emits on the response before it decides to destroy the socket. node:http's own 'finish'
 * listener arms the keep-alive socket's timer: what a 'finish' creates is not the handler's (trackAsync), as
 * what Node creates inside a write is not (see patchedWrite).
 */
function patchedEmit(this: Res, type: string | symbol): boolean {
  const s = this[kState];
  // eslint-disable-next-line prefer-rest-params
  const args = arguments as unknown as Parameters<ServerResponse['emit']>;
  const orig = s?.orig?.emit;
  if (s === undefined || orig == null) return Object.getPrototypeOf(this).emit.apply(this, args);
  if (type === 'close') onClose.call(this);
  else if (type === 'drain') onDrain.call(this);
  else if (type === 'timeout') socketTimedOut(s);
  else if (type === 'finish') {
    tracker.internalDepth++;
    try {
      return orig.apply(this, args);
    } finally {
      tracker.internalDepth--;
    }
  }
  return orig.apply(this, args);
}

/** The peer ended its side (EOF) or reset the connection: a destroy then followed from the peer. */
function peerClosed(socket: PeerSocket): boolean {
  if (socket._readableState?.ended === true) return true;
  const code = (socket.errored as { code?: unknown } | null)?.code;
  return typeof code === 'string' && PEER_ERRORS.has(code);
}

/**
 * HTTP/1.1, at close: the socket was destroyed before the response finished, and not by the peer (no EOF from it,
 * no reset): the server cut it (an error handler's `req.socket.destroy()` after the headers went out, a server
 * closing its connections), outcome `error`. Read from the socket's state at close, so nothing wraps its destroy().
 */
function socketCut(s: StreamState, res: Res): void {
  const socket = res.socket as PeerSocket | null;
  if (socket == null || socket.destroyed !== true || peerClosed(socket)) return;
  serverCut(s, socket.errored != null);
}

function onDrain(this: Res): void {
  const s = this[kState];
  if (s === undefined || s.blockedSince < 0) return;
  try {
    const waited = performance.now() - s.blockedSince;
    s.blockedSince = -1;
    tracker.emit('drain', s, waited);
  } catch (err) {
    tracker.fault('tracker', err);
  }
}

function onClose(this: Res): void {
  const s = this[kState];
  if (s === undefined || s.phase !== Phase.Open) return;
  try {
    const h2 = s.h2;
    // HTTP/2: `writableFinished` is true after a peer's RST_STREAM (Node 20); the stream says how it ended.
    const finished = h2 !== null ? h2Finished(h2) : this.writableFinished;
    if (h2 === null && !finished && !s.clientClosed) socketCut(s, this);
    const now = performance.now();
    tracker.markClosed(s, now);
    if (s.drainListening) this.removeListener('drain', onDrain);
    if (s.blockedSince >= 0) {
      const waited = now - s.blockedSince;
      s.blockedSince = -1;
      tracker.emit('drain', s, waited);
    }
    // An error the server side set (destroy(err), a failed pipe into the response) while the client was there.
    // (An HTTP/2 stream is also `errored` by a peer's RST_STREAM with an error code: server-side cuts are seen by watchH2.)
    const resErrored = h2 === null && Boolean((this as { errored?: unknown }).errored);
    // The connection gone before the end, whoever cut it: later writes are writes after close.
    if (closeOutcome(s, finished, resErrored)) tracker.emit('clientClosed', s);
    tracker.emit('close', s);
    tracker.settle(s);
  } catch (err) {
    tracker.fault('tracker', err);
  }
}

// ---- the SSE runtime's direct write (the hub's live fan-out, src/runtime/sse/stream.ts kPushShared) ----

const nodeWrite = OutgoingMessage.prototype.write;

/**
 * True when nothing but Node and the tracker writes `res`: its `write` is Node's own (untracked) or the tracker's
 * over Node's own. Only then may a shared chunk go straight to its socket (a wrapper — compression — must see it).
 */
export function plainWrite(res: ServerResponse): boolean {
  const s = (res as Res)[kState];
  const w = res.write as unknown;
  return s === undefined ? w === nodeWrite : w === patchedWrite && s.orig?.write === nodeWrite;
}

/**
 * Writes `chunk` straight to `socket` for a response that `plainWrite()` accepted, counting `bytes` (the frame's,
 * without chunk framing) as the tracker's `res.write` counts its common case. Returns false and writes nothing when
 * the tracker's own write must see this one (not open yet, the first write, after the client left): the caller
 * then goes through `res.write`.
 */
export function directWrite(res: ServerResponse, socket: Socket, chunk: Uint8Array, bytes: number): boolean {
  const s = (res as Res)[kState];
  if (s !== undefined) {
    if (s.phase !== Phase.Open || s.writes === 0 || s.clientClosed || gone(s, res as Res)) return false;
    countCommon(s, bytes);
  }
  tracker.internalDepth++;
  try {
    socket.write(chunk);
  } finally {
    tracker.internalDepth--;
  }
  return true;
}
