import { StreamscopeError } from '../../errors.js';
import { checksumLine } from './checksum.js';

/** One server-sent event. `data` that is not a string is sent as JSON. */
export interface SseEvent {
  /** The `id:` field; no line breaks or NUL. */
  id?: string;
  /** The `event:` field (event type); no line breaks. */
  event?: string;
  data?: unknown;
  /** The `retry:` field, milliseconds. */
  retry?: number;
}

const LINE_BREAK = /\r\n|\r|\n/;
const BAD_ID = /[\r\n\0]/;
const BAD_EVENT = /[\r\n]/;

function invalid(what: string): StreamscopeError {
  return new StreamscopeError('STREAMSCOPE_ERR_INVALID_EVENT', `invalid event: ${what}`);
}

/** The text of `data`: strings as they are, anything else as JSON (undefined as empty). */
export function dataText(data: unknown): string {
  if (typeof data === 'string') return data;
  if (data === undefined) return '';
  const s = JSON.stringify(data);
  return s === undefined ? '' : s;
}

/** `data:` lines of a payload. A leading space always follows the colon, so data that starts with one survives. */
export function encodeData(text: string): string {
  if (!LINE_BREAK.test(text)) return 'data: ' + text + '\n';
  let out = '';
  for (const line of text.split(LINE_BREAK)) out += 'data: ' + line + '\n';
  return out;
}

/** Options of `encodeEvent()`. */
export interface EncodeOptions {
  /** `'crc32'`: the frame begins with `: crc32=<hex>` (docs/sse.md, "Checksums"). */
  checksum?: 'crc32';
}

/**
 * Frames one event. Line breaks inside data become several `data:` lines (a decoder joins them with
 * `\n`, so `\r\n` and `\r` come back as `\n`). An id or event type with a line break cannot be framed:
 * it throws `STREAMSCOPE_ERR_INVALID_EVENT` rather than let one event forge another. With
 * `{ checksum: 'crc32' }` the frame begins with a comment line carrying the CRC-32 of its id, type and data.
 */
export function encodeEvent(ev: SseEvent, options?: EncodeOptions): string {
  let out = '';
  if (ev.event !== undefined && ev.event !== '') {
    if (typeof ev.event !== 'string' || BAD_EVENT.test(ev.event)) throw invalid('event type must be a string without line breaks');
    out += 'event: ' + ev.event + '\n';
  }
  if (ev.id !== undefined) {
    if (typeof ev.id !== 'string' || BAD_ID.test(ev.id)) throw invalid('id must be a string without line breaks or NUL');
    out += 'id: ' + ev.id + '\n';
  }
  if (ev.retry !== undefined) {
    if (!Number.isInteger(ev.retry) || ev.retry < 0) throw invalid('retry must be a non-negative integer');
    out += 'retry: ' + ev.retry + '\n';
  }
  const text = dataText(ev.data);
  out += encodeData(text);
  if (options !== undefined && options.checksum === 'crc32') {
    out = checksumLine(ev.id, ev.event === '' ? undefined : ev.event, text) + out;
  }
  return out + '\n';
}

/** A comment frame (`: text`), one per line of text; invisible to EventSource, keeps proxies awake. */
export function encodeComment(text = ''): string {
  if (text === '') return ':\n\n';
  let out = '';
  for (const line of String(text).split(LINE_BREAK)) out += ': ' + line + '\n';
  return out + '\n';
}
