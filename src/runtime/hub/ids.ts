import type { IncomingMessage } from 'node:http';

import { randomBytes } from 'node:crypto';

/**
 * Event ids are `<epoch>:<ms>-<seq>`. `<ms>-<seq>` is a Redis stream id (two unsigned 64-bit decimals)
 * for both stores: memoryStore makes them the same way (epoch milliseconds, then a sequence within the
 * millisecond), so one parser, one comparison and one "just before" serve both. `<epoch>` names the
 * store's history: a random token per memory store, a key in Redis that a flush or a restart without
 * persistence loses (and the next command replaces). An id of another epoch was issued by a history the
 * store no longer has, so a resume from it cannot be served without a gap, and the hub says so.
 * Ids are kept as canonical strings (no leading zeros) and compared without BigInt.
 */

const ID = /^(?:([0-9a-z]{1,32}):)?(\d{1,20})-(\d{1,20})$/;
const EPOCH = /^[0-9a-z]{1,32}$/;
const U64_MAX = '18446744073709551615';
/** Longer than any valid id; a header past this is malformed without a regex run over it. */
export const MAX_ID_LENGTH = 74;

export const ZERO_ID = '0-0';

/** A fresh epoch: 12 random hex digits. */
export function newEpoch(): string {
  return randomBytes(6).toString('hex');
}

/** True for a string usable as an epoch (1-32 of [0-9a-z]). */
export function isEpoch(v: unknown): v is string {
  return typeof v === 'string' && EPOCH.test(v);
}

/** `<epoch>:<streamId>`. */
export function withEpoch(epoch: string, streamId: string): string {
  return epoch + ':' + streamId;
}

/** The epoch of an id, or null for a bare `<ms>-<seq>` (an id from before epochs, or `0-0`). */
export function epochOf(id: string): string | null {
  const i = id.indexOf(':');
  return i < 0 ? null : id.slice(0, i);
}

/** The `<ms>-<seq>` part of an id. */
export function streamIdOf(id: string): string {
  const i = id.indexOf(':');
  return i < 0 ? id : id.slice(i + 1);
}

function canonical(n: string): string | null {
  let i = 0;
  while (i < n.length - 1 && n.charCodeAt(i) === 48) i++;
  const c = i === 0 ? n : n.slice(i);
  if (c.length > 20 || (c.length === 20 && c > U64_MAX)) return null;
  return c;
}

/**
 * The canonical form of a Last-Event-ID (`<epoch>:<ms>-<seq>`, or a bare `<ms>-<seq>`), or null when it
 * is malformed. Never throws.
 */
export function parseEventId(value: unknown): string | null {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH) return null;
  const m = ID.exec(value);
  if (m === null) return null;
  const ms = canonical(m[2] as string);
  const seq = canonical(m[3] as string);
  if (ms === null || seq === null) return null;
  return m[1] === undefined ? ms + '-' + seq : m[1] + ':' + ms + '-' + seq;
}

function cmpNum(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders two canonical ids of one epoch by their `<ms>-<seq>` (the epoch is not compared): negative, 0 or positive. */
export function compareIds(a: string, b: string): number {
  const ea = a.indexOf(':') + 1;
  const eb = b.indexOf(':') + 1;
  const ia = a.indexOf('-', ea);
  const ib = b.indexOf('-', eb);
  const c = cmpNum(a.slice(ea, ia), b.slice(eb, ib));
  return c !== 0 ? c : cmpNum(a.slice(ia + 1), b.slice(ib + 1));
}

function decrement(n: string): string {
  // n > 0, canonical decimal
  const digits = n.split('');
  let i = digits.length - 1;
  while (digits[i] === '0') {
    digits[i] = '9';
    i--;
  }
  digits[i] = String(Number(digits[i]) - 1);
  const s = digits.join('');
  return canonical(s) as string;
}

/** The greatest id below `id` in its epoch ('0-0' stays '0-0'): resuming from it replays `id` itself. */
export function predecessor(id: string): string {
  const e = id.indexOf(':') + 1;
  const prefix = id.slice(0, e);
  const i = id.indexOf('-', e);
  const ms = id.slice(e, i);
  const seq = id.slice(i + 1);
  if (seq !== '0') return prefix + ms + '-' + decrement(seq);
  if (ms === '0') return prefix + ZERO_ID;
  return prefix + decrement(ms) + '-' + U64_MAX;
}

export type LastEventId =
  | { kind: 'none' }
  | { kind: 'valid'; id: string }
  | { kind: 'invalid'; raw: string };

function queryParam(url: string | undefined, name: string): string | undefined {
  if (url === undefined) return undefined;
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  try {
    const v = new URLSearchParams(url.slice(q + 1)).get(name);
    return v === null ? undefined : v;
  } catch {
    return undefined;
  }
}

/** The raw Last-Event-ID of a request: the header, else the `lastEventId` query parameter. */
export function rawLastEventId(req: IncomingMessage): string | undefined {
  const h = req.headers['last-event-id'];
  const v = Array.isArray(h) ? h[0] : h;
  if (typeof v === 'string' && v !== '') return v;
  return queryParam(req.url, 'lastEventId');
}

/** Reads and classifies the Last-Event-ID of a request. Never throws. */
export function readLastEventId(req: IncomingMessage): LastEventId {
  let raw: string | undefined;
  try {
    raw = rawLastEventId(req);
  } catch {
    return { kind: 'none' };
  }
  if (raw === undefined) return { kind: 'none' };
  const id = parseEventId(raw.trim());
  return id === null ? { kind: 'invalid', raw: raw.slice(0, 64) } : { kind: 'valid', id };
}
