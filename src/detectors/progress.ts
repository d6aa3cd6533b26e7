import fs from 'node:fs';
import type { Socket } from 'node:net';
import type { StreamState } from '../stream-state.js';

/**
 * "Stalled" means no progress, not a long wait for `drain`. The kernel wakes a blocked writer only once a
 * third of its send buffer is free: a client reading steadily at 100 KB/s from a 4 MB send buffer keeps a
 * write blocked for 10 s and more. So while a stream is blocked we look at what the client takes:
 *
 * - delivered = bytes the kernel accepted from the socket (its handle's `bytesWritten − writeQueueSize`)
 *   minus the socket's send queue (Linux: `tx_queue` of `/proc/self/net/tcp` and `tcp6`, found by the
 *   socket's inode): bytes the peer has acknowledged. It grows whenever the client's TCP takes bytes.
 * - elsewhere (no procfs, not a TCP socket) only the first term: it grows only when the kernel wakes the
 *   writer, at a third of the send buffer, so a slow reader can look stalled there (docs/detectors.md).
 * - progress also when the response's user-space queue (`writableLength`) shrank.
 *
 * Sampled by the detectors' sweep, only for streams blocked longer than SAMPLE_FROM × stallAfterMs, at
 * most MAX_SAMPLED_PER_SWEEP of them per sweep, with one read of each proc file per sweep at most. The
 * detector, the `stream_stalled` gauge and the health report all call `isStalled()`.
 */

/** A blocked stream is sampled once it has been blocked this share of its stallAfterMs. */
export const SAMPLE_FROM = 0.5;
/** Blocked streams sampled per sweep at most (rotating, so every one is sampled in turn). */
export const MAX_SAMPLED_PER_SWEEP = 2000;

const PROC_FILES = ['/proc/self/net/tcp', '/proc/self/net/tcp6'] as const;

/** Per-stream progress record, allocated the first time the stream is sampled. */
export class Progress {
  /** The socket's inode: -1 not looked up yet, 0 none (no procfs, not a TCP socket, not found). */
  inode = -1;
  /** The blocked episode (its `blockedSince`) these samples belong to. */
  episode = -1;
  /** Whether `delivered` includes the kernel's send queue (fixed per episode). */
  kernel = false;
  firstAt = -1;
  firstDelivered = 0;
  sampledAt = -1;
  delivered = 0;
  queued = 0;
  /** performance.now() of the last sample that showed progress (-1: none in this episode). */
  progressAt = -1;
}

type Handle = { fd?: number; bytesWritten?: number; writeQueueSize?: number; _parent?: Handle };

/** The socket's OS-level handle (under TLS, the TCP handle below the TLS one). */
function osHandle(sock: Socket | null | undefined): Handle | null {
  let h = (sock as unknown as { _handle?: Handle | null } | null | undefined)?._handle ?? null;
  if (h === null || typeof h !== 'object') return null;
  while (h._parent !== undefined && h._parent !== null && typeof h._parent === 'object') h = h._parent;
  return h;
}

function accepted(h: Handle | null): number {
  if (h === null) return NaN;
  const w = h.bytesWritten;
  const q = h.writeQueueSize;
  return typeof w === 'number' && typeof q === 'number' ? w - q : NaN;
}

let procOk: boolean | undefined;

function procAvailable(): boolean {
  if (procOk === undefined) {
    try {
      procOk = process.platform === 'linux' && fs.existsSync(PROC_FILES[0]);
    } catch {
      procOk = false;
    }
  }
  return procOk;
}

function inodeOf(h: Handle | null): number {
  const fd = h?.fd;
  if (typeof fd !== 'number' || fd < 0) return 0;
  try {
    const link = fs.readlinkSync(`/proc/self/fd/${fd}`);
    const m = /^socket:\[(\d+)\]$/.exec(link);
    return m === null ? 0 : Number(m[1]);
  } catch {
    return 0;
  }
}

/**
 * Reads the send queue of the wanted inodes from one proc file into `out`. Scans each line once for
 * the fields it needs (tx_queue is field 4 before the colon, the inode field 9); no per-line arrays.
 */
export function readSendQueues(text: string, wanted: ReadonlyMap<number, unknown>, out: Map<number, number>): void {
  let pos = text.indexOf('\n') + 1; // the header line
  const n = text.length;
  while (pos > 0 && pos < n) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = n;
    let field = 0;
    let i = pos;
    let tx = -1;
    let inode = -1;
    while (i < end && field <= 9) {
      while (i < end && text.charCodeAt(i) === 32) i++;
      const start = i;
      while (i < end && text.charCodeAt(i) !== 32) i++;
      if (field === 4) tx = parseInt(text.slice(start, text.indexOf(':', start)), 16);
      else if (field === 9) inode = Number(text.slice(start, i));
      field++;
    }
    if (inode > 0 && wanted.has(inode) && tx >= 0) out.set(inode, tx);
    pos = end + 1;
  }
}

/** Cost of the sampling, for the benchmark: proc reads and the time spent in them (ms). */
export const samplingStats = { sweeps: 0, procReads: 0, procMs: 0, sampled: 0 };

const candidates: StreamState[] = [];
let rotate = 0;

/** Called by the sweep for each open stream: is it blocked long enough to be sampled? */
export function considerForSampling(s: StreamState, now: number): void {
  if (s.blockedSince >= 0 && now - s.blockedSince >= s.config.stallAfterMs * SAMPLE_FROM) candidates.push(s);
}

/** Samples the candidates gathered by `considerForSampling` since the last call. */
export function sampleCandidates(now: number): void {
  const n = candidates.length;
  if (n === 0) return;
  samplingStats.sweeps++;
  const take = Math.min(n, MAX_SAMPLED_PER_SWEEP);
  const start = n > take ? rotate % n : 0;
  rotate += take;
  const picked: Array<[StreamState, Progress, Handle | null]> = [];
  const wanted = new Map<number, Progress>();
  const useProc = procAvailable();
  for (let k = 0; k < take; k++) {
    const s = candidates[(start + k) % n] as StreamState;
    let p = s.progress;
    if (p === null) {
      p = new Progress();
      s.progress = p;
    }
    const h = osHandle(s.res?.socket as Socket | null | undefined);
    if (p.inode < 0) p.inode = useProc ? inodeOf(h) : 0;
    if (p.episode !== s.blockedSince) {
      p.episode = s.blockedSince;
      p.firstAt = -1;
      p.sampledAt = -1;
      p.progressAt = -1;
      p.kernel = p.inode > 0;
    }
    if (p.kernel) wanted.set(p.inode, p);
    picked.push([s, p, h]);
  }
  candidates.length = 0;
  const queues = new Map<number, number>();
  if (wanted.size > 0) {
    const t0 = performance.now();
    for (const file of PROC_FILES) {
      if (queues.size === wanted.size) break;
      try {
        readSendQueues(fs.readFileSync(file, 'latin1'), wanted, queues);
        samplingStats.procReads++;
      } catch {
        /* a file that is not there (no IPv6): the other one may hold it */
      }
    }
    samplingStats.procMs += performance.now() - t0;
  }
  for (const [s, p, h] of picked) {
    samplingStats.sampled++;
    let delivered = accepted(h);
    if (p.kernel) {
      const q = queues.get(p.inode);
      if (q === undefined) {
        // Not in the tables (closed meanwhile, or not a TCP socket): count on the handle alone from now on.
        p.inode = 0;
        p.kernel = false;
        p.firstAt = -1;
        p.sampledAt = -1;
      } else {
        delivered -= q;
      }
    }
    const res = s.res;
    const queued = res !== null && !res.destroyed ? res.writableLength : 0;
    if (Number.isNaN(delivered)) delivered = 0;
    if (p.sampledAt >= 0) {
      if (delivered > p.delivered || queued < p.queued) p.progressAt = now;
    } else {
      p.firstAt = now;
      p.firstDelivered = delivered;
    }
    p.sampledAt = now;
    p.delivered = delivered;
    p.queued = queued;
  }
}

/**
 * The one rule for "stalled": a blocked write whose samples have shown no progress for longer than
 * stallAfterMs (since it blocked, or since the last progress). The detector, `stream_stalled` and
 * `healthHandler()` use it. `now` is unused by the rule itself: the evidence is the samples.
 */
export function isStalled(s: StreamState, now: number): boolean {
  void now;
  if (s.blockedSince < 0) return false;
  const p = s.progress;
  if (p === null || p.episode !== s.blockedSince || p.sampledAt < 0) return false;
  const since = p.progressAt > s.blockedSince ? p.progressAt : s.blockedSince;
  return p.sampledAt - since > s.config.stallAfterMs;
}

/** What the client was seen taking while the stream was blocked: bytes per second, and over how long. */
export function observedReadRate(s: StreamState): { bytesPerSec: number; overMs: number; kernel: boolean } {
  const p = s.progress;
  if (p === null || p.firstAt < 0 || p.sampledAt <= p.firstAt) return { bytesPerSec: 0, overMs: 0, kernel: p?.kernel ?? false };
  const ms = p.sampledAt - p.firstAt;
  return { bytesPerSec: Math.max(0, ((p.delivered - p.firstDelivered) * 1000) / ms), overMs: ms, kernel: p.kernel };
}
