/**
 * Reading capture directories and writing reports without trusting the file system.
 *
 * `diag analyze` is often run by root or by an operator on a directory someone else produced. Everything
 * here refuses, with one InputError line (exit 2), what could turn that into a way in:
 * - a capture directory that is a symlink target owned by another user, or that another user can write
 *   (group/world-writable, or inside a parent another user could rename it out of);
 * - a file in it that is a symlink, not a regular file (a FIFO would hang `open`; it is opened with
 *   O_NONBLOCK and refused after `fstat`), or owned by another user;
 * - JSON nested deeper than MAX_JSON_DEPTH (it would overflow the stack later, in JSON.stringify);
 * - an output path that is a symlink: outputs go to a fresh temp file (O_CREAT|O_EXCL|O_NOFOLLOW, 0600)
 *   renamed into place, so a link at the output's name is replaced, never written through.
 *
 * Every capture-file reader (streams.json, the heap snapshot, traces, profiles, pprof files) goes through
 * `inspectCaptureFile` + `openInput` / `readInput` / `readJsonInput`.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { InputError } from '../heap/input-error.js';

/** JSON inputs nested deeper than this are refused (the reports never need more than a few levels). */
export const MAX_JSON_DEPTH = 256;

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_WRONLY, O_CREAT, O_EXCL } = fs.constants;

function me(): number {
  return typeof process.getuid === 'function' ? process.getuid() : -1;
}

/** The invoking user or root may own what diag reads; nobody else. */
function trustedOwner(uid: number): boolean {
  const u = me();
  return u < 0 || uid === u || uid === 0;
}

function errno(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/**
 * Checks a capture directory (by its real path): owned by the invoking user or root, not writable by
 * group or others, and every parent owned by the invoking user or root and either not writable by others
 * or sticky (like /tmp), so nobody else can swap the directory or a file in it once checked.
 */
export function checkCaptureDir(dir: string): void {
  const check = (p: string, isTarget: boolean): void => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch (err) {
      throw new InputError(`cannot read ${p}: ${errno(err)}`);
    }
    if (st.isSymbolicLink()) throw new InputError(`${p} is a symbolic link; refusing to follow it`);
    if (!trustedOwner(st.uid)) {
      throw new InputError(
        isTarget
          ? `${dir} belongs to uid ${st.uid}, not you (uid ${me()}) or root; refusing a capture directory another user controls (copy it first)`
          : `${dir} is inside ${p}, which belongs to uid ${st.uid}; refusing a capture directory another user controls (copy it first)`,
      );
    }
    const othersWrite = (st.mode & 0o022) !== 0;
    if (isTarget && othersWrite) {
      throw new InputError(`${dir} has mode ${(st.mode & 0o777).toString(8)}: another user can write it; refusing (chmod go-w it, or copy it first)`);
    }
    if (!isTarget && othersWrite && (st.mode & 0o1000) === 0 /* not sticky */) {
      throw new InputError(`${dir} is inside ${p} (mode ${(st.mode & 0o777).toString(8)}), which another user can write; refusing (copy it first)`);
    }
  };
  check(dir, true);
  for (let p = path.dirname(dir); ; p = path.dirname(p)) {
    check(p, false);
    if (p === path.dirname(p)) break;
  }
}

/** Whether anything (a link included) is at `file`; never follows a link. */
export function exists(file: string): boolean {
  try {
    fs.lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks a file inside a checked capture directory without following it: a regular file owned by the
 * invoking user or root. The directory cannot be changed by anyone else, so this still holds at open.
 */
export function inspectCaptureFile(file: string): fs.Stats {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch (err) {
    throw new InputError(`cannot read ${file}: ${errno(err)}`);
  }
  if (st.isSymbolicLink()) throw new InputError(`${file} is a symbolic link; refusing to follow it`);
  if (!st.isFile()) throw new InputError(`${file} is not a regular file`);
  if (!trustedOwner(st.uid)) throw new InputError(`${file} belongs to uid ${st.uid}, not you (uid ${me()}) or root; refusing it`);
  return st;
}

/**
 * Opens `file` for reading: never through a symlink (O_NOFOLLOW), never blocking on a FIFO or device
 * (O_NONBLOCK, then fstat), and only a regular file. Returns the descriptor and its stats.
 */
export function openInput(file: string): { fd: number; stat: fs.Stats } {
  let fd: number;
  try {
    fd = fs.openSync(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new InputError(`${file} is a symbolic link; refusing to follow it`);
    if (code === 'ENOENT') throw new InputError(`${file}: no such file or directory`);
    throw new InputError(`cannot read ${file}: ${errno(err)}`);
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new InputError(`${file} is not a regular file`);
    return { fd, stat };
  } catch (err) {
    fs.closeSync(fd);
    if (err instanceof InputError) throw err;
    throw new InputError(`cannot read ${file}: ${errno(err)}`);
  }
}

/** Reads a whole regular file (see openInput), refusing one larger than `maxBytes`. */
export function readInput(file: string, maxBytes: number, what = ''): Buffer {
  const { fd, stat } = openInput(file);
  try {
    if (stat.size > maxBytes) throw new InputError(`${file} is larger than ${Math.floor(maxBytes / 2 ** 20)} MB${what}`);
    const buf = Buffer.allocUnsafe(stat.size);
    let off = 0;
    while (off < buf.length) {
      const n = fs.readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return off === buf.length ? buf : buf.subarray(0, off);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`cannot read ${file}: ${errno(err)}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads and parses a JSON file (see readInput), refusing invalid JSON and nesting deeper than MAX_JSON_DEPTH. */
export function readJsonInput(file: string, maxBytes: number, what = ''): unknown {
  const text = readInput(file, maxBytes, what).toString('utf8');
  return parseJsonInput(text, file);
}

/** JSON.parse with a nesting limit checked first; one InputError line for either failure. */
export function parseJsonInput(text: string, file: string, maxDepth = MAX_JSON_DEPTH): unknown {
  const depth = jsonDepth(text, maxDepth);
  if (depth > maxDepth) throw new InputError(`${file} is nested deeper than ${maxDepth} levels; refusing it`);
  try {
    return JSON.parse(text);
  } catch {
    throw new InputError(`${file} is not valid JSON`);
  }
}

/** The nesting depth of JSON text (strings skipped); stops counting once past `stopAbove`. */
export function jsonDepth(text: string, stopAbove = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > stopAbove) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/**
 * Writes `data` to `file` (mode 0600) through a fresh temp file in the same directory, created with
 * O_CREAT|O_EXCL|O_NOFOLLOW and renamed into place: whatever is at `file` (a symlink to a file of
 * root's, say) is replaced, never written through, and a reader never sees half a file.
 */
export function writeOutput(file: string, data: string | Buffer): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new InputError(`cannot write ${file}: ${errno(err)}`);
  }
  try {
    fs.fchmodSync(fd, 0o600);
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    for (let off = 0; off < buf.length; ) off += fs.writeSync(fd, buf, off, buf.length - off);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      /* closed already */
    }
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* renamed or gone */
    }
    throw new InputError(`cannot write ${file}: ${errno(err)}`);
  }
}
