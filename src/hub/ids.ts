import type { IncomingMessage } from 'node:http';

/**
 * Event ids are Redis stream ids, `<ms>-<seq>` (two unsigned 64-bit decimals), for both stores:
 * memoryStore makes them the same way (epoch milliseconds, then a sequence within the millisecond),
 * so one parser, one comparison and one "just before" serve both, and a client can never tell them apart.
 * Ids are kept as canonical strings (no leading zeros) and compared without BigInt.
 */

const ID = /^(\d{1,20})-(\d{1,20})$/;
const U64_MAX = '18446744073709551615';
/** Longer than any valid id; a header past this is malformed without a regex run over it. */
export const MAX_ID_LENGTH = 41;

export const ZERO_ID = '0-0';

function canonical(n: string): string | null {
  let i = 0;
  while (i < n.length - 1 && n.charCodeAt(i) === 48) i++;
  const c = i === 0 ? n : n.slice(i);
  if (c.length > 20 || (c.length === 20 && c > U64_MAX)) return null;
  return c;
}

/** The canonical form of a Last-Event-ID, or null when it is malformed. Never throws. */
export function parseEventId(value: unknown): string | null {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH) return null;
  const m = ID.exec(value);
  if (m === null) return null;
  const ms = canonical(m[1] as string);
  const seq = canonical(m[2] as string);
  if (ms === null || seq === null) return null;
  return ms + '-' + seq;
}

function cmpNum(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders two canonical ids: negative, 0 or positive. */
export function compareIds(a: string, b: string): number {
  const ia = a.indexOf('-');
  const ib = b.indexOf('-');
  const c = cmpNum(a.slice(0, ia), b.slice(0, ib));
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

/** The greatest id below `id` ('0-0' stays '0-0'): resuming from it replays `id` itself. */
export function predecessor(id: string): string {
  const i = id.indexOf('-');
  const ms = id.slice(0, i);
  const seq = id.slice(i + 1);
  if (seq !== '0') return ms + '-' + decrement(seq);
  if (ms === '0') return ZERO_ID;
  return decrement(ms) + '-' + U64_MAX;
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
