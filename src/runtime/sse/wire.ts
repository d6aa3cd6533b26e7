import crc32Table from 'crc/calculators/crc32';

/*
 * The checksum wire format, shared by the server (`sse()`, the hub) and `streamscope/client`. Browser-safe:
 * nothing here imports a `node:` module (the client's build includes this file).
 *
 * With `checksum: 'crc32'` each event's frame begins with a comment line
 *
 *     : crc32=<8 lower-case hex digits>
 *
 * inside the same block as its fields (no blank line between), so the checksum travels with the event it
 * covers. A comment line is ignored by every SSE client (WHATWG HTML, "event stream interpretation": a line
 * that starts with a colon is ignored), so a stock EventSource dispatches the same event with the same data.
 * The CRC-32 (IEEE 802.3, the one of zlib and gzip) covers the UTF-8 bytes of `<id>\n<event>\n<data>`: the id
 * and event type as sent ('' when absent) and the data as a client reads it back (line breaks as `\n`).
 * Covering the id matters: a resume starts from it.
 *
 * A hub's first connection sends its anchor (an id-only frame) as `: anchor=<id>` before the `id:` line:
 * stock clients ignore the comment and take the id; clients built on eventsource-parser, which skips id-only
 * frames, read the anchor from the comment.
 */

export const CHECKSUM_COMMENT = 'crc32=';
export const ANCHOR_COMMENT = 'anchor=';

const LINE_BREAKS = /\r\n|\r/g;
const HEX8 = /^[0-9a-f]{8}$/;

/** What the checksum covers: `<id>\n<event>\n<data>`, the data's line breaks as a client reads them (`\n`). */
export function checksumInput(id: string | undefined, event: string | undefined, data: string): string {
  const d = data.indexOf('\r') < 0 ? data : data.replace(LINE_BREAKS, '\n');
  return (id ?? '') + '\n' + (event ?? '') + '\n' + d;
}

let encoder: TextEncoder | null = null;

/** CRC-32 of the UTF-8 bytes of `text` (the `crc` package's table-driven calculator), unsigned. */
export function crc32Portable(text: string): number {
  encoder ??= new TextEncoder();
  return crc32Table(encoder.encode(text)) >>> 0;
}

/** 8 lower-case hex digits. */
export function hex8(n: number): string {
  const s = (n >>> 0).toString(16);
  return s.length === 8 ? s : '00000000'.slice(s.length) + s;
}

/** True for exactly 8 lower-case hex digits (the checksum's only valid form). */
export function isHex8(s: string): boolean {
  return HEX8.test(s);
}
