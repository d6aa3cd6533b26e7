import { performance } from 'node:perf_hooks';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Phase, type StreamState } from '../../core/stream-state.js';
import { getTracker } from '../../core/tracker.js';
import { DEFAULTS } from '../../core/config.js';
import { aboveOf } from '../../core/above.js';
import { StreamList } from '../../core/stream-list.js';
import { routeMetricsOf } from '../metrics.js';
import { has, raise } from './raising.js';

/**
 * What reached the wire (docs/detectors.md `buffered_stream`, docs/metrics.md `stream_first_byte_seconds`).
 * Compares the writes the handler gave the response with the body bytes its socket was handed, in the
 * detectors' sweep; nothing per write. HTTP/1.1 only (an HTTP/2 session's socket carries many streams).
 *
 * - body bytes on the socket = `socket.bytesWritten` (bytes handed to the socket, queued ones included) − its
 *   value when the stream opened − the response's header block once it went out;
 * - first byte on the wire: checked once, in the `setImmediate` after the first write (a write that went
 *   straight through is on the socket by then), else by each sweep (250 ms) and at close;
 * - `buffered_stream`: writes were given after the last time the socket got body bytes, and the socket has
 *   got none since, for `bufferedAfterMs`.
 */

type Res = ServerResponse & { _header?: unknown; _headerSent?: boolean; flush?: unknown; chunkedEncoding?: boolean };

const tracker = getTracker();

/**
 * A stream's view of its socket and of its writes' pace (src/consumers/detectors/gaps.ts), in one object in
 * one slot: it lives as long as the stream, so every field is a small integer or a pointer (times are whole
 * milliseconds since the stream's start, no boxed doubles) — about 120 B per open stream.
 */
export class Watch {
  /** The HTTP/1.1 socket (null: HTTP/2, no socket, or closed). */
  socket: Socket | null;
  /** socket.bytesWritten when the stream opened. */
  readonly bw0: number;
  /** HDR0: the header block was on the socket already when the stream opened (counted in bw0); FIRST_BYTE: seen. */
  flags: number;
  /** Body bytes on the socket at the last look, and the writes given by then. */
  lastSent = 0;
  givenAtSend = 0;
  /** The first sweep that saw writes given since the socket last moved (ms since start; -1: none held). */
  heldSince = -1;
  // gaps.ts: given writes at the last look; the look that last saw them move (ms since start) and the writes'
  // mean spacing it saw (ms); the previous look; the longest gap so far (ms, -1: none)
  lastWrites = 0;
  lastChangeAt = -1;
  spacing = 0;
  prevLookAt = 0;
  longestMs = -1;
  constructor(socket: Socket | null, bw0: number, hdr0: boolean) {
    this.socket = socket;
    this.bw0 = bw0;
    this.flags = hdr0 ? HDR0 : 0;
  }
}

const HDR0 = 1;
const FIRST_BYTE = 2;
/** Whether a layer sits between the handler and the socket (LAYERED), once known (LAYER_KNOWN). */
const LAYER_KNOWN = 4;
const LAYERED = 8;
/** The Watch's index in the wire checks' list, plus one (0: not in it), in the flags from this bit up. */
const SLOT_SHIFT = 4;
const OWN_BITS = (1 << SLOT_SHIFT) - 1;

/** Milliseconds since the stream started, whole (a small integer field, never a boxed double). */
export const msOf = (s: StreamState, at: number): number => Math.round(at - s.t0);

const kSlot = tracker.slot('watch');

/**
 * The streams the wire checks look at (`sweepWires`), not every open stream: an HTTP/1.1 stream from its first
 * write until its first byte reached the socket, and one with a layer that can hold its writes (a layer above
 * streamscope's write, src/core/above.ts, or a Content-Encoding) for as long as it is open. Without such a layer,
 * the writes streamscope counts go to the socket in the same call (its `bytesWritten` counts what it queues), so
 * there is nothing to hold once the first byte is out.
 */
class Wired extends StreamList {
  // the index, plus one, in the Watch's flags above its own bits (no field of its own: 8 B on every open stream)
  protected index(s: StreamState): number {
    const w = s.slot<Watch>(kSlot);
    return w === undefined ? -1 : (w.flags >>> SLOT_SHIFT) - 1;
  }
  protected setIndex(s: StreamState, i: number): void {
    const w = s.slot<Watch>(kSlot);
    if (w !== undefined) w.flags = (w.flags & OWN_BITS) | ((i + 1) << SLOT_SHIFT);
  }
}
const wired = new Wired();

/** Whether a layer can hold the stream's writes (looked up once the response's headers are out). */
function layered(s: StreamState, w: Watch): boolean {
  if ((w.flags & LAYER_KNOWN) !== 0) return (w.flags & LAYERED) !== 0;
  const res = s.res as Res | null;
  if (res === null) return false;
  const yes = aboveOf(res) !== undefined || encodingOf(res) !== null;
  if (res._headerSent === true || aboveOf(res) !== undefined) w.flags |= LAYER_KNOWN | (yes ? LAYERED : 0);
  return yes;
}

/** A stream's Watch (undefined before it opened). */
export const watchOf = (s: StreamState): Watch | undefined => s.slot<Watch>(kSlot);

/** The writes the handler gave: counted above a layer that holds them (src/core/above.ts), else the response's own. */
export function givenWrites(s: StreamState): number {
  const a = aboveOf(s.res);
  return a !== undefined ? a.given : s.writes;
}

/** Body bytes handed to the socket since the stream opened (-1: unknown). */
function bodyOnSocket(s: StreamState, w: Watch): number {
  const sock = w.socket;
  const res = s.res as Res | null;
  if (sock === null || res === null) return -1;
  const bw = sock.bytesWritten;
  if (typeof bw !== 'number') return -1;
  let n = bw - w.bw0;
  // the header block is latin1: one byte per character
  if ((w.flags & HDR0) === 0 && res._headerSent === true && typeof res._header === 'string') n -= res._header.length;
  return n;
}

function firstByte(s: StreamState, w: Watch, at: number): void {
  w.flags |= FIRST_BYTE;
  routeMetricsOf(s)?.firstByte.observe((at - s.t0) / 1000);
}

/**
 * Bytes a compressed body starts with before any of its data (a gzip header is 10 bytes, zlib's 2, in a chunk
 * of their own when the encoder emits them alone): the first byte on the wire is a byte past them.
 */
function preamble(res: Res | null): number {
  const enc = res === null ? null : encodingOf(res);
  if (enc === null) return 0;
  const e = enc.toLowerCase();
  const p = e.includes('gzip') ? 10 : e.includes('deflate') ? 2 : 0;
  return p > 0 && res?.chunkedEncoding === true ? p + p.toString(16).length + 4 : p;
}

type OwnSocket = Socket & { _httpMessage?: unknown };

/**
 * The first write, about to go down (the tracker announces it before it calls Node's write), reaches the socket in
 * that same call: nothing sits between the handler and the socket (no layer above streamscope's write, no
 * Content-Encoding), the socket is the response's own and takes writes (not a pipelined response waiting for its
 * turn, whose writes Node queues on the response), the response has a body (not HEAD, 204, 304), is not ended and checks no Content-Length,
 * and the write is not empty. Its first byte is then on the socket at the first write, without a look after it
 * (a `setImmediate` per stream, the rest of the checks below).
 */
function straightThrough(s: StreamState, w: Watch): boolean {
  const res = s.res as (Res & { _hasBody?: boolean; strictContentLength?: boolean }) | null;
  const sock = w.socket as OwnSocket | null;
  return (
    res !== null &&
    sock !== null &&
    s.bytes > 0 &&
    res.socket === sock &&
    sock._httpMessage === res &&
    sock.writable &&
    !sock.destroyed &&
    res._hasBody !== false &&
    res.strictContentLength !== true &&
    !res.writableEnded &&
    aboveOf(res) === undefined &&
    encodingOf(res) === null
  );
}

/** Delays of the checks after the first write, before the sweep takes over (ms; the first is setImmediate). */
const RECHECK_MS = [10, 20, 40, 80, 160];

function checkFirstByte(s: StreamState, step = 0): void {
  try {
    const w = s.slot<Watch>(kSlot);
    if (w === undefined || (w.flags & FIRST_BYTE) !== 0 || s.phase !== Phase.Open) return;
    if (bodyOnSocket(s, w) > preamble(s.res as Res | null)) firstByte(s, w, performance.now());
    else if (step < RECHECK_MS.length) setTimeout(checkFirstByte, RECHECK_MS[step], s, step + 1).unref();
  } catch (err) {
    tracker.fault('detectors', err);
  }
}

function encodingOf(res: Res): string | null {
  const enc = res.getHeader('content-encoding');
  const v = Array.isArray(enc) ? enc.join(', ') : enc === undefined ? '' : String(enc);
  return v === '' || v.toLowerCase() === 'identity' ? null : v;
}

/** The finding's detail: what is held, the likely cause, the fix. */
function detail(s: StreamState, w: Watch, held: number, heldMs: number, sent: number): string {
  const res = s.res as Res | null;
  const enc = res === null ? null : encodingOf(res);
  const type = res === null ? undefined : res.getHeader('content-type');
  const causes: string[] = [];
  if (enc !== null) causes.push(`the response has Content-Encoding: ${enc} (a compression middleware or plugin keeps the bytes until its buffer fills)`);
  const above = aboveOf(res);
  if (above !== undefined && above.write !== null) causes.push('res.write is wrapped by a middleware that holds what it is given');
  else if (above !== undefined) causes.push('the body is a stream piped into the response through a Transform that does not flush');
  if (causes.length === 0) causes.push('a layer between the handler and the socket holds the bytes (a Transform without flush)');
  const fix =
    res !== null && typeof res.flush === 'function'
      ? 'call res.flush() after each event, or exclude event streams from compression (the filter option of `compression`)'
      : 'exclude event streams from compression (`customTypes` of @fastify/compress, the filter of `compression`), or flush the Transform after each event';
  return (
    `${held} write(s) given to the response have not reached the socket for ${Math.round(heldMs)} ms or more ` +
    `(${sent} body bytes sent so far${typeof type === 'string' ? `, ${type}` : ''}): ${causes.join('; ')}. Fix: ${fix}`
  );
}

/** The sweep: the wire checks of the streams in `wired`. Returns how many it looked at. */
export function sweepWires(now: number): number {
  const n = wired.size;
  wired.each((s) => {
    const w = s.slot<Watch>(kSlot);
    if (w === undefined || w.socket === null || s.phase !== Phase.Open) {
      wired.delete(s);
      return;
    }
    sweepWire(s, w, now);
    // first byte out, nothing held, and no layer that could hold the next writes: nothing left to look at
    if ((w.flags & FIRST_BYTE) !== 0 && w.heldSince < 0 && !layered(s, w)) wired.delete(s);
  });
  return n;
}

/** The sweep, for one stream: first byte, and writes held above the socket. */
function sweepWire(s: StreamState, w: Watch, now: number): void {
  const sent = bodyOnSocket(s, w);
  if (sent < 0) return;
  const given = givenWrites(s);
  if (sent !== w.lastSent) {
    w.lastSent = sent;
    w.givenAtSend = given;
    w.heldSince = -1;
    if ((w.flags & FIRST_BYTE) === 0 && sent > preamble(s.res as Res | null)) firstByte(s, w, now);
  } else if (given > w.givenAtSend && !s.clientClosed) {
    const at = msOf(s, now);
    if (w.heldSince < 0) w.heldSince = at;
    else if (at - w.heldSince >= (s.config.bufferedAfterMs ?? DEFAULTS.bufferedAfterMs) && !has(s, 'buffered_stream')) {
      raise(s, 'buffered_stream', 'warning', detail(s, w, given - w.givenAtSend, at - w.heldSince, sent));
    }
  }
}

/** The wire checks' part of a stream's lifecycle (registered with the gaps' as one listener: detectors/index.ts). */
export const wireListener = {
  open(s: StreamState): void {
    const res = s.res as Res | null;
    // HTTP/2: the session's socket carries every stream of the connection (the Watch still serves gaps.ts)
    const socket = s.h2 === null ? (res?.socket ?? null) : null;
    const bw = socket === null ? undefined : socket.bytesWritten;
    if (res === null || socket === null || typeof bw !== 'number') {
      s.setSlot(kSlot, new Watch(null, 0, false));
      return;
    }
    const hdr0 = res._headerSent === true;
    const w = new Watch(socket, bw, hdr0);
    const given = givenWrites(s);
    // The header block went out before the stream opened (promoted after its first write): the writes so far
    // went with it, unless a compression layer is there (the header then may have gone out alone).
    w.givenAtSend = hdr0 ? given : 0;
    s.setSlot(kSlot, w);
    if (hdr0 && s.firstWriteAt >= 0 && aboveOf(res) === undefined && encodingOf(res) === null) firstByte(s, w, s.firstWriteAt);
    if (s.firstWriteAt >= 0 || aboveOf(res) !== undefined) wired.add(s);
  },
  firstWrite(s: StreamState): void {
    const w = s.slot<Watch>(kSlot);
    if (w === undefined || w.socket === null || (w.flags & FIRST_BYTE) !== 0) return;
    // not in the list yet: this is the first write itself, about to go down (a stream that wrote before it opened is)
    if (!wired.has(s) && straightThrough(s, w)) {
      firstByte(s, w, s.firstWriteAt);
      return;
    }
    wired.add(s);
    setImmediate(checkFirstByte, s, 0);
  },
  close(s: StreamState): void {
    const w = s.slot<Watch>(kSlot);
    if (w === undefined) return;
    wired.delete(s);
    if (w.socket === null) return;
    // the end may have flushed what a layer held
    if ((w.flags & FIRST_BYTE) === 0 && bodyOnSocket(s, w) > preamble(s.res as Res | null)) firstByte(s, w, s.closedAt);
    w.socket = null;
  },
};
