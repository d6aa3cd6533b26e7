import * as zlib from 'node:zlib';
import { invalidOption } from '../../errors.js';
import { CHECKSUM_COMMENT, checksumInput, crc32Portable, hex8 } from './wire.js';

/** The checksums `sse()` and the hub can stamp on events (docs/sse.md, "Checksums"). */
export type ChecksumKind = 'crc32';

/** Node's own CRC-32 (zlib.crc32, Node >= 20.15 / 22.2): strings are hashed as UTF-8. */
const native = (zlib as { crc32?: (data: string, value?: number) => number }).crc32;

/** CRC-32 of the UTF-8 bytes of `text`: zlib's where the runtime has it, else the portable table. */
export const crc32 = typeof native === 'function' ? (text: string): number => native(text) >>> 0 : crc32Portable;

/** The comment line that precedes an event's fields: `: crc32=<hex>\n`. */
export function checksumLine(id: string | undefined, event: string | undefined, data: string): string {
  return ': ' + CHECKSUM_COMMENT + hex8(crc32(checksumInput(id, event, data))) + '\n';
}

/** Validates the `checksum` option: undefined (off) or 'crc32'; anything else throws STREAMSCOPE_ERR_INVALID_OPTION. */
export function checkChecksum(v: unknown): boolean {
  if (v === undefined) return false;
  if (v !== 'crc32') throw invalidOption('checksum', "'crc32' (or undefined)", v);
  return true;
}
