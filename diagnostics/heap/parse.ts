/**
 * Streaming reader of V8 `.heapsnapshot` files.
 *
 * The file is read in fixed-size chunks and tokenized byte by byte: the `snapshot` header (a small object)
 * is collected and parsed, the `nodes` and `edges` integer arrays go straight into typed arrays sized from
 * the header's counts, and for `strings` only each string's position in the file is kept (the few strings
 * the analysis needs are read back with positional reads). Other sections (`trace_tree`, `samples`,
 * `locations`, …) are skipped. Memory therefore grows with the number of nodes and edges, never with the
 * size of the text, and the whole file is never held at once.
 */
import fs from 'node:fs';
import { InputError } from './input-error.js';
import { openInput } from '../transport/safe-fs.js';
import type { HeapSnapshot } from './snapshot.js';
import { SnapshotParser } from './tokenizer.js';

export { MAX_NODES } from './tokenizer.js';

const CHUNK = 1 << 20;

export interface ParseOptions {
  /** Called with (bytesRead, totalBytes) now and then. */
  onProgress?: (read: number, total: number) => void;
  /** Strings the caller wants to find by value (their index is recorded while streaming). */
  wanted?: Iterable<string>;
  /** Keep the graph only; node names, self sizes and edge names are read back later (HeapSnapshot.loadColumns). */
  lean?: boolean;
  /** Bytes read at a time (default 1 MiB); tests use odd sizes to cross every token boundary. */
  chunkSize?: number;
}

/**
 * Read a heap snapshot from `path`. Throws `InputError` with one clear line for anything that is not a
 * complete, consistent V8 heap snapshot.
 */
export function readHeapSnapshot(path: string, options: ParseOptions = {}): HeapSnapshot {
  // never through a symlink, never blocking on a FIFO; a regular file only
  const { fd, stat: st } = openInput(path);
  try {
    const parser = new SnapshotParser(path, st.size, options);
    const chunk = Math.max(1, Math.floor(options.chunkSize ?? CHUNK));
    const buf = Buffer.allocUnsafe(chunk);
    let pos = 0;
    let lastReport = 0;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(fd, buf, 0, chunk, pos);
      } catch (err) {
        throw new InputError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      if (n === 0) break;
      parser.feed(buf, n, pos);
      pos += n;
      if (options.onProgress && pos - lastReport >= 16 * CHUNK) {
        lastReport = pos;
        options.onProgress(pos, st.size);
      }
    }
    options.onProgress?.(pos, st.size);
    const snap = parser.finish(fd);
    return snap;
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
    throw err;
  }
}
