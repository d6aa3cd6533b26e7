import fs from 'node:fs';
import inspector from 'node:inspector';

/**
 * Heap, trace and CPU recordings through an in-process `inspector.Session`: nothing is written into the
 * app's folders (unlike `trace_events`, which writes `node_trace.*.log` into the working directory), and no
 * port is opened.
 */

export type Post = (method: string, params?: object) => Promise<Record<string, unknown>>;

/** An in-process inspector session and a promise-returning `post` (also used by profiles.ts). */
export function open(): { session: inspector.Session; post: Post } {
  const session = new inspector.Session();
  session.connect();
  const post: Post = (method, params) =>
    new Promise((resolve, reject) => {
      session.post(method, params ?? {}, (err, result) => {
        if (err) reject(err);
        else resolve((result ?? {}) as Record<string, unknown>);
      });
    });
  return { session, post };
}

function closeQuietly(session: inspector.Session): void {
  try {
    session.disconnect();
  } catch {
    /* already gone */
  }
}

/**
 * Takes a heap snapshot. V8 serializes it synchronously and hands each chunk to `onChunk` as it goes, so a
 * sink that writes each chunk out before returning keeps only one chunk in the app's memory.
 */
export async function heapSnapshot(onChunk: (chunk: string) => void): Promise<void> {
  const { session, post } = open();
  session.on('HeapProfiler.addHeapSnapshotChunk', (m: { params: { chunk: string } }) => onChunk(m.params.chunk));
  try {
    await post('HeapProfiler.takeHeapSnapshot', { reportProgress: false, captureNumericValue: false });
  } finally {
    closeQuietly(session);
  }
}

/** Records trace events for `seconds` (or until `signal` aborts); batches go to `onBatch` as V8 delivers them. */
export async function trace(seconds: number, categories: string[], signal: AbortSignal, onBatch: (events: unknown[]) => void): Promise<number> {
  const { session, post } = open();
  let count = 0;
  session.on('NodeTracing.dataCollected', (m: { params: { value: unknown[] } }) => {
    count += m.params.value.length;
    onBatch(m.params.value);
  });
  const complete = new Promise<void>((resolve) => session.once('NodeTracing.tracingComplete', () => resolve()));
  try {
    await post('NodeTracing.start', { traceConfig: { includedCategories: categories, recordMode: 'recordContinuously' } });
    await wait(seconds * 1000, signal);
    await post('NodeTracing.stop');
    await complete;
    return count;
  } finally {
    closeQuietly(session);
  }
}

/** Records a CPU profile for `seconds` (or until `signal` aborts). */
export async function cpuProfile(seconds: number, signal: AbortSignal): Promise<unknown> {
  const { session, post } = open();
  try {
    await post('Profiler.enable');
    await post('Profiler.start');
    await wait(seconds * 1000, signal);
    const { profile } = await post('Profiler.stop');
    await post('Profiler.disable').catch(() => undefined);
    return profile;
  } finally {
    closeQuietly(session);
  }
}

/** Resolves after `ms` or on abort; the timer never keeps the app alive. */
export function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    t.unref();
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * How long a heap transfer may hold the app waiting for its reader, in total (docs/security.md): 30 s, plus
 * 1 s per MiB the reader has taken (so `diag` on a loaded machine finishes a large snapshot, while a reader
 * slower than 1 MiB/s is cut after about 30 s). Past it the transfer is aborted. V8's own serialization time
 * comes on top and cannot be shortened.
 */
export const HEAP_TRANSFER_MAX_WAIT_MS = 30_000;
export const HEAP_TRANSFER_WAIT_MS_PER_MIB = 1_000;

/**
 * Writes to a socket's file descriptor synchronously, waiting (a few ms at a time) while the reader is
 * behind. Used only while V8 serializes a heap snapshot: the app is paused by V8 anyway, and this is what
 * lets the snapshot flow to `diag` instead of piling up in the app's memory. Gives up (and drops the rest)
 * when the reader makes no progress for `stallMs`, or when the waits add up to `maxWaitMs` (a reader that
 * takes a little every few seconds never stalls, yet would freeze the app for as long as it likes), so no
 * client can hang the app.
 */
export class BlockingFdWriter {
  failed: string | null = null;
  bytes = 0;
  /** How many times the writer waited for the reader (backpressure reached the app, and it waited). */
  waits = 0;
  /** Milliseconds spent waiting for the reader, in total. */
  waitedMs = 0;
  constructor(
    private readonly fd: number,
    private readonly stallMs = 10_000,
    private readonly maxWaitMs = HEAP_TRANSFER_MAX_WAIT_MS,
  ) {}

  write(buf: Buffer): void {
    if (this.failed !== null) return;
    let off = 0;
    let stalledSince = -1;
    while (off < buf.length) {
      try {
        const n = fs.writeSync(this.fd, buf, off, buf.length - off);
        off += n;
        this.bytes += n;
        stalledSince = -1;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') {
          this.failed = `write failed: ${code ?? String(err)}`;
          return;
        }
        const now = Date.now();
        if (stalledSince < 0) stalledSince = now;
        else if (now - stalledSince > this.stallMs) {
          this.failed = `the reader made no progress for ${this.stallMs} ms`;
          return;
        }
        if (this.waitedMs > this.maxWaitMs + (this.bytes / 2 ** 20) * HEAP_TRANSFER_WAIT_MS_PER_MIB) {
          this.failed = `the reader was too slow: the app waited ${Math.round(this.waitedMs / 1000)} s for it in total (limit ${this.maxWaitMs / 1000} s + 1 s per MiB read)`;
          return;
        }
        this.waits++;
        Atomics.wait(sleeper, 0, 0, 2);
        this.waitedMs += Date.now() - now;
      }
    }
  }
}
