import { performance } from 'node:perf_hooks';
import fs from 'node:fs';
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import type { StreamState } from '../../core/stream-state.js';
import { getTracker } from '../../core/tracker.js';

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
 * - a client on this host (loopback, or our own address): its socket is in the same tables, and its receive queue
 *   (`rx_queue`: bytes its application has not read) is subtracted too, so delivered grows with each of the client's
 *   reads, not only with its TCP's window updates (on loopback ~100-300 KiB apart: a client reading ~94 KB/s
 *   showed no send-queue progress for 3.5 s, issue 19).
 * - HTTP/2: every stream of a session shares one socket, whose counters and queue move when any stream
 *   progresses; a stream's own progress is the bytes it let out: written to it minus its `bufferSize` (what
 *   waits in its writable and in the session for the client's stream window, which the client reopens as it
 *   reads that stream). Neither the socket's counters nor its kernel queue are used for it (issue 20).
 *
 * Sampled by the detectors' sweep, only for streams blocked longer than SAMPLE_FROM × stallAfterMs, at
 * most MAX_SAMPLED_PER_SWEEP of them per sweep. The proc tables are read asynchronously, one read at a
 * time, spaced by PROC_COST_FACTOR × the last read's duration, except when a stream has no baseline yet or its
 * threshold has passed since its last sample: then the read starts at that sweep (once DUE_COST_FACTOR × the
 * last read's duration has passed), and the detector checks the streams it sampled as soon as it is done
 * (`onSampled`), so a client that takes nothing is found within stallAfterMs + two sweeps + two reads of the
 * block. A sample pairs the handle's counters and the kernel's queue only when both describe one moment of one
 * blocked episode (`readQueues`). The detector, the `stream_stalled` gauge and the health report all call
 * `isStalled()`.
 */

/**
 * A blocked stream is sampled once it has been blocked this share of its stallAfterMs, and its first kernel
 * sample (the baseline) is due at once (`dueForSample`), not at the reads' regular spacing. The baseline is
 * taken this late on purpose: a client that never reads was seen taking another 8-10 KiB within its first
 * second (loopback), which an earlier baseline counts as progress (tried at 0.02: a stuck client found 1.1 s
 * after a 5 s threshold, its rate not 0). "No progress" then runs
 * from the block, but from at most `unmeasuredLeadMs` before the moment the baseline is known (`sinceOf`): what the client did before it was not seen. Counting from the block whatever the baseline's
 * time let a baseline that came late (a busy read, the reads' spacing) or a single sample claim a stall for a
 * client that was reading ("0 B/s over the last 0.0 s", issue 20). A receiver advertises window in steps of
 * about 1/16 of its (autotuned) receive buffer: a Node 24 client on loopback reading ~110 KB/s steps by
 * ~290 KiB, one update per ~2.7 s, which a baseline at half of a 3 s threshold missed.
 */
export const SAMPLE_FROM = 0.1;

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
  /** An HTTP/2 stream: `delivered` is the bytes its own flow control let out (`sentOnStream`). */
  h2 = false;
  /**
   * The client's socket may be in this host's tables (a loopback or same-address peer): its ports as a key
   * (`pairKey` of the client's local port, then ours), -1 when the peer is elsewhere. Looked up with the inode.
   */
  peerKey = -1;
  /**
   * Whether `delivered` of this episode also subtracts the client socket's receive queue (1), or not (0), or is not
   * decided yet (-1, before the baseline): fixed at the baseline, so that the samples of one episode are comparable.
   */
  peer = -1;
  firstAt = -1;
  /**
   * The duration of the read that gave the baseline (`lastReadMs` then): the lead before the baseline that counts as
   * no progress (`unmeasuredLeadMs`) is the baseline's own, fixed for the episode, not the latest read's: reads of
   * different lengths later (a loaded host, a table that grew) must not move the start of the span a claim covers.
   */
  firstReadMs = 0;
  firstDelivered = 0;
  sampledAt = -1;
  delivered = 0;
  /** The handle's kernel-accepted byte count and the response's queue at the last sweep. */
  accepted = NaN;
  queued = -1;
  /** performance.now() of the last sample that showed progress (-1: none in this episode). */
  progressAt = -1;
  /**
   * When the client was last seen taking bytes (a sample that saw delivered bytes grow, or a drain), and the
   * longest interval between two such moments of one blocked stretch: episodes that follow each other within
   * CONTINUOUS_MS (a drain, and the producer's next write blocks at once) are one stretch; a stream that was not
   * blocked for longer starts measuring afresh, so time spent unblocked is never counted as a step interval.
   */
  stepAt = -1;
  stepGap = 0;
  /** The earliest moment the step at `stepAt` can have happened (the sample before it saw none). */
  stepFrom = -1;
  /** performance.now() of the last drain that ended a blocked episode while the client was there (-1: none). */
  drainAt = -1;
}

/** This module's slot on each stream: its Progress record (StreamState.slot). */
const kSlot = getTracker().slot('progress');

/** A stream's progress record; null until the stream is first sampled. */
export function progressOf(s: StreamState): Progress | null {
  return s.slot<Progress>(kSlot) ?? null;
}

/**
 * A client that takes bytes in steps (its TCP advertises window every `stepGap` ms) is given up to
 * STEP_ALLOWANCE × its longest observed step interval, but never more than MAX_STEP_STALL × stallAfterMs.
 * A client never seen taking a byte gets stallAfterMs exactly.
 */
export const STEP_ALLOWANCE = 1.5;
export const MAX_STEP_STALL = 2;

/**
 * A blocked episode that starts within this long after the previous one drained continues its blocked stretch:
 * the drain was a step (the client took a third of the send buffer, or the response's queue), and the interval
 * from the stretch's last step to it counts as a step interval (issue 20, item 4: on Node 22 and later a response's
 * 64 KiB highWaterMark makes a steady reader's episodes long, and its first step interval was only ever measured
 * across a drain).
 */
export const CONTINUOUS_MS = 50;

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

/**
 * An HTTP/2 stream's bytes sent: written to it (the tracker's tally) minus its `bufferSize` (its writable's queue
 * plus what the session holds for it until the client's stream window opens). NaN when the stream says nothing.
 */
function sentOnStream(s: StreamState, h2: object): number {
  const buffered = (h2 as { bufferSize?: unknown }).bufferSize;
  return typeof buffered === 'number' ? s.bytes - buffered : NaN;
}

/**
 * The port pair (`pairKey`) of the client's own socket when the client may be on this host (a loopback address, or
 * the socket's own address): its socket is then in this host's tables too. -1 otherwise.
 */
function peerKeyOf(sock: Socket | null | undefined): number {
  try {
    const ra = sock?.remoteAddress;
    const rp = sock?.remotePort;
    const lp = sock?.localPort;
    if (typeof ra !== 'string' || typeof rp !== 'number' || typeof lp !== 'number') return -1;
    const local = ra.startsWith('127.') || ra === '::1' || ra.startsWith('::ffff:127.') || ra === sock?.localAddress;
    return local ? pairKey(rp, lp) : -1;
  } catch {
    return -1;
  }
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

const SPACE = 32;
const COLON = 58;

/** Parses the unsigned decimal at `i` (after spaces); the index after it goes to `cursor` (-1: none). */
let cursor = 0;
function decimalAt(text: string, i: number, end: number): number {
  while (i < end && text.charCodeAt(i) === SPACE) i++;
  let v = 0;
  let c = text.charCodeAt(i);
  if (!(c >= 48 && c <= 57)) {
    cursor = -1;
    return -1;
  }
  while (i < end && c >= 48 && c <= 57) {
    v = v * 10 + (c - 48);
    c = text.charCodeAt(++i);
  }
  cursor = i;
  return v;
}

/** The four hex digits at `i` (a port as the proc tables print it), -1 if they are not. */
function hex4(text: string, i: number): number {
  let v = 0;
  for (let k = 0; k < 4; k++) {
    const c = text.charCodeAt(i + k);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/** A socket's ports as one number: its local port, then its remote port. */
export function pairKey(localPort: number, remotePort: number): number {
  return localPort * 65536 + remotePort;
}

/**
 * What a read looks for besides the wanted send queues: the client's own socket, for clients on this host (a
 * loopback or same-address peer: its socket is in the same tables). `pairs` holds the port pairs (`pairKey`) such a
 * client socket has (its local port is our remote one); `inodes` our sockets that have such a client. The read
 * fills `own` (the addresses of those sockets of ours, as printed: "local remote") and `seen` (for each line with a
 * wanted port pair, its addresses and its receive queue); `found` counts the pairs seen. See `peerReceiveQueue`.
 */
export interface PeerScan {
  pairs: Set<number>;
  inodes: Set<number>;
  own: Map<number, string>;
  seen: Map<number, Array<[string, number]>>;
  found: number;
}

export function peerScan(): PeerScan {
  return { pairs: new Set(), inodes: new Set(), own: new Map(), seen: new Map(), found: 0 };
}

/**
 * Reads the send queue of the wanted inodes from one proc table into `out`. The kernel prints each line
 * as `sl: local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode ...` with fixed-width hex
 * fields up to `retrnsmt` (addresses of 13 characters in tcp, 37 in tcp6), so tx_queue and the decimal
 * `uid timeout inode` sit at fixed offsets from the line's first colon; a line of another shape is skipped.
 * With `peers`, also the lines of the clients' sockets on this host (see `PeerScan`).
 */
export function readSendQueues(text: string, wanted: ReadonlyMap<number, unknown>, out: Map<number, number>, v6 = false, peers: PeerScan | null = null): void {
  const header = text.indexOf('\n');
  if (header >= 0) sendQueuesOfLines(text, header + 1, text.length, wanted, out, v6, peers);
}

/** `readSendQueues` on the lines of a table between `pos` and `n` (no header line there). */
function sendQueuesOfLines(text: string, pos: number, n: number, wanted: ReadonlyMap<number, unknown>, out: Map<number, number>, v6: boolean, peers: PeerScan | null): void {
  const addr = v6 ? 37 : 13; // hex address:port
  const txAt = 2 * addr + 7;
  const uidAt = 2 * addr + 46;
  const anyPeer = peers !== null && peers.pairs.size > 0;
  while (pos < n) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = n;
    const colon = text.indexOf(':', pos);
    if (colon > 0 && colon < end && colon + uidAt + 8 < end && text.charCodeAt(colon + txAt + 8) === COLON) {
      decimalAt(text, colon + uidAt, end); // uid
      if (cursor > 0) decimalAt(text, cursor, end); // timeout
      const inode = cursor > 0 ? decimalAt(text, cursor, end) : -1;
      if (inode > 0 && wanted.has(inode)) {
        const tx = parseInt(text.slice(colon + txAt, colon + txAt + 8), 16);
        if (tx >= 0) out.set(inode, tx);
        if (anyPeer && peers.inodes.has(inode)) peers.own.set(inode, text.slice(colon + 2, colon + 3 + 2 * addr));
      } else if (anyPeer) {
        // a client's socket on this host: its local port is the remote port of one of ours
        const local = hex4(text, colon + 2 + addr - 4);
        const key = local < 0 ? -1 : pairKey(local, hex4(text, colon + 3 + 2 * addr - 4));
        if (key >= 0 && peers.pairs.has(key)) {
          const rx = parseInt(text.slice(colon + txAt + 9, colon + txAt + 17), 16);
          if (rx >= 0) {
            let lines = peers.seen.get(key);
            if (lines === undefined) {
              lines = [];
              peers.seen.set(key, lines);
              peers.found++;
            }
            lines.push([text.slice(colon + 2, colon + 3 + 2 * addr), rx]);
          }
        }
      }
    }
    pos = end + 1;
  }
}

/** An address as tcp6 prints an IPv4-mapped one (::ffff:a.b.c.d), as tcp prints the IPv4 one; others unchanged. */
function asV4(a: string): string {
  return a.length === 37 && a.startsWith('0000000000000000FFFF0000') ? a.slice(24) : a;
}

/**
 * The receive queue of the client's socket of our socket `inode` (its addresses are ours swapped: either table, an
 * IPv4 client of an IPv6 listener's socket too), -1 when the read did not see it.
 */
export function peerReceiveQueue(peers: PeerScan, inode: number, key: number): number {
  const own = peers.own.get(inode);
  const lines = peers.seen.get(key);
  if (own === undefined || lines === undefined) return -1;
  const sp = own.indexOf(' ');
  const local = asV4(own.slice(0, sp));
  const remote = asV4(own.slice(sp + 1));
  for (const [a, rx] of lines) {
    const i = a.indexOf(' ');
    if (asV4(a.slice(0, i)) === remote && asV4(a.slice(i + 1)) === local) return rx;
  }
  return -1;
}

/**
 * Cost of the sampling, for the benchmark: proc reads started (`issued`) and done (`procReads`, per table), their
 * time (ms, off the event loop), parse time (ms, on it).
 */
export const samplingStats = { sweeps: 0, issued: 0, procReads: 0, procMs: 0, parseMs: 0, sampled: 0 };

/**
 * The proc tables are read off the event loop (fs.readFile runs in libuv's thread pool) and at most
 * one read at a time. A read costs the kernel time to print every TCP socket of the network namespace
 * (about 3 µs each on a quiet host, 20 ms for 7,000 sockets; several times that on a loaded one): the
 * next read waits PROC_COST_FACTOR times as long as the last one took (at most 1/PROC_COST_FACTOR of one
 * core), but never more than MAX_PROC_INTERVAL_MS. A read that decides a threshold (`due`: a stream's
 * threshold passed since its last sample) waits only DUE_COST_FACTOR times as long as the last read took (at
 * most 1/DUE_COST_FACTOR of one thread of the pool while thresholds keep passing: on a table of 12,000
 * sockets, reads of 30-80 ms, 120-320 ms apart; on one of 100,000, 0.4-0.7 s reads, up to 2.8 s apart, so
 * there a stall is found up to that much later than stallAfterMs + 1 s).
 */
export const PROC_COST_FACTOR = 20;
export const MAX_PROC_INTERVAL_MS = 750;
export const DUE_COST_FACTOR = 4;

/** Called with the streams whose kernel sample just arrived (the detector checks them at once). */
let onSampled: ((streams: readonly StreamState[]) => void) | null = null;
export function setOnSampled(fn: ((streams: readonly StreamState[]) => void) | null): void {
  onSampled = fn;
}

const candidates: StreamState[] = [];
let rotate = 0;
let procBusy = false;
let nextProcAt = 0;
let nextDueAt = 0;
/** How long the last proc read took (ms, issue to result). */
let lastReadMs = 0;

/** Called by the sweep for each open stream: is it blocked long enough to be sampled? */
export function considerForSampling(s: StreamState, now: number): void {
  if (s.blockedSince >= 0 && now - s.blockedSince >= s.config.stallAfterMs * SAMPLE_FROM) candidates.push(s);
}

/** The detectors' sweep period (SWEEP_MS of index.ts). */
const SWEEP_PERIOD_MS = 250;

/**
 * The most of the time before a blocked episode's baseline that counts as "no progress": the baseline's normal
 * delay, as it was always counted: SAMPLE_FROM × stallAfterMs, the sweep that takes it, and the wait for a read
 * and the read (DUE_COST_FACTOR + 1 times the last read's duration). A baseline later than that (the reads'
 * regular spacing, up to MAX_PROC_INTERVAL_MS, made it so before issue 20) shortens the claim instead: the time
 * nothing measured is not counted.
 */
export function unmeasuredLeadMs(stallAfterMs: number, readMs = lastReadMs): number {
  return SAMPLE_FROM * stallAfterMs + SWEEP_PERIOD_MS + (DUE_COST_FACTOR + 1) * readMs;
}

/** A new blocked episode of the stream (its first sample). Exported for the unit test of the rule. */
export function startEpisode(p: Progress, s: StreamState): void {
  // not blocked for a while before this episode: no step interval spans the time in between
  if (p.drainAt < 0 || s.blockedSince - p.drainAt > CONTINUOUS_MS) p.stepAt = -1;
  p.episode = s.blockedSince;
  p.firstAt = -1;
  p.sampledAt = -1;
  p.progressAt = -1;
  p.accepted = NaN;
  p.queued = -1;
  p.kernel = p.inode > 0;
  p.peer = -1;
}

/**
 * Records one sample of `delivered` bytes, taken at some moment between `at` and `seenBy` (a kernel sample: the
 * read was issued at `at` and its result was in at `seenBy`). Each bound is used where it claims less: a sample
 * without progress counts as of `at`, and the baseline and progress as of `seenBy` (the client may have taken the
 * bytes that late): the no-progress span the samples show is then never longer than the one that happened.
 * Exported for the unit test of the rule.
 */
export function record(p: Progress, delivered: number, at: number, seenBy = at, readMs = lastReadMs): void {
  if (p.sampledAt >= 0) {
    if (delivered > p.delivered) {
      p.progressAt = Math.max(p.progressAt, seenBy);
      // the longest interval between steps seen: a receiver's updates come in bursts (two ~30 ms apart, then
      // ~0.5-1 s of nothing, measured on loopback at ~430 KB/s), so the last interval says little
      if (p.stepAt >= 0 && seenBy > p.stepAt) p.stepGap = Math.max(p.stepGap, seenBy - p.stepAt);
      if (seenBy > p.stepAt) {
        p.stepAt = seenBy;
        p.stepFrom = p.sampledAt;
      }
    }
  } else {
    // the baseline: a span without progress starts at the latest moment it can describe
    p.firstAt = seenBy;
    p.firstReadMs = readMs;
    p.firstDelivered = delivered;
  }
  if (at > p.sampledAt) p.sampledAt = at;
  p.delivered = delivered;
}

/**
 * A blocked episode ended with `drain` while the client was there: the client took bytes then. It is a step of the
 * stretch (see `Progress.stepAt`). Exported for the unit test of the rule.
 */
export function drained(p: Progress, at: number): void {
  // the drain's moment is exact; the step before it happened after `stepFrom` at the earliest: the interval is taken
  // as long as it can have been (the rule claims less)
  if (p.stepAt >= 0 && at > p.stepAt) p.stepGap = Math.max(p.stepGap, at - Math.max(0, Math.min(p.stepFrom, p.stepAt)));
  if (at > p.stepAt) {
    p.stepAt = at;
    p.stepFrom = at;
  }
  p.drainAt = at;
}

/** The detectors' `drain` handler: a blocked episode ended (`drain`, or close). */
export function onEpisodeEnd(s: StreamState): void {
  // a close ends the episode too: that is no step of the client's
  if (s.closedAt >= 0 || s.clientClosed) return;
  const p = progressOf(s);
  if (p !== null) drained(p, performance.now());
}

/**
 * Samples the candidates gathered by `considerForSampling` since the last call: the handle's counters
 * and the response's queue now, and (Linux) starts one read of the kernel's send queues.
 */
export function sampleCandidates(now: number): void {
  const n = candidates.length;
  if (n === 0) return;
  samplingStats.sweeps++;
  const take = Math.min(n, MAX_SAMPLED_PER_SWEEP);
  const start = n > take ? rotate % n : 0;
  rotate += take;
  const useProc = procAvailable();
  let wanted: Map<number, Wanted> | null = null;
  let peers: PeerScan | null = null;
  let due = false;
  for (let k = 0; k < take; k++) {
    const s = candidates[(start + k) % n] as StreamState;
    let p = progressOf(s);
    if (p === null) {
      p = new Progress();
      s.setSlot(kSlot, p);
    }
    // HTTP/2: the session's socket is every stream's; the stream's own sent bytes instead
    const h2 = s.h2;
    const h = h2 === null ? osHandle(s.res?.socket as Socket | null | undefined) : null;
    if (p.inode < 0) {
      p.inode = useProc && h2 === null ? inodeOf(h) : 0;
      p.h2 = h2 !== null;
      if (p.inode > 0) p.peerKey = peerKeyOf(s.res?.socket as Socket | null | undefined);
    }
    if (p.episode !== s.blockedSince) startEpisode(p, s);
    samplingStats.sampled++;
    const acc = h2 === null ? accepted(h) : sentOnStream(s, h2);
    const res = s.res;
    const queued = res !== null && !res.destroyed ? res.writableLength : 0;
    // The kernel took bytes from the socket, or the response's own queue shrank: progress, on any platform.
    if (acc > p.accepted || queued < p.queued) p.progressAt = now;
    p.accepted = acc;
    p.queued = queued;
    if (p.kernel) {
      if (wanted === null) wanted = new Map();
      wanted.set(p.inode, [p, acc, s, p.episode]);
      if (p.peerKey >= 0 && p.peer !== 0) {
        if (peers === null) peers = peerScan();
        peers.pairs.add(p.peerKey);
        peers.inodes.add(p.inode);
      }
      if (!due) due = dueForSample(p, s, now);
    } else {
      record(p, Number.isNaN(acc) ? 0 : acc, now);
    }
  }
  candidates.length = 0;
  if (wanted !== null && !procBusy && (now >= nextProcAt || (due && now >= nextDueAt))) readQueues(wanted, now, peers);
}

/**
 * Bytes asked of the kernel per read of a proc table. It prints the table a page (about 27 lines) per read() at
 * most, whatever is asked: fs.readFile, which cannot know the size of a proc file, kept a fresh 64 KiB buffer per
 * read until the end, 16 times the table (a table of 1.7 MB held 26.8 MiB; under CPU contention such a read takes
 * seconds: the guards' tarball test saw 75-98 MiB of heap+external in the app, with other test files' sockets in
 * the table). Parsed as it arrives from one buffer, a read holds this buffer (0.06 MiB measured) and the last partial
 * line, whatever the table's size.
 */
const PROC_CHUNK = 64 * 1024;

/**
 * Reads one proc table into `queues` (the wanted inodes' send queues), a chunk at a time, then calls `next`. Stops
 * early once every wanted inode is found. A table that cannot be opened or read counts nothing (those sockets fall
 * back to the handle's counters).
 */
function readTable(file: string, v6: boolean, wanted: ReadonlyMap<number, unknown>, queues: Map<number, number>, peers: PeerScan | null, buf: Buffer, next: () => void): void {
  fs.open(file, 'r', (err, fd) => {
    if (err !== null) return next();
    let carry = ''; // a line not finished in the last chunk
    let header = true; // the table's first line is its header
    const finish = (read: boolean): void => {
      if (read) samplingStats.procReads++;
      fs.close(fd, () => next());
    };
    const parse = (text: string, end: number): void => {
      const t0 = performance.now();
      try {
        let from = 0;
        if (header) {
          from = text.indexOf('\n') + 1;
          if (from === 0) return;
          header = false;
        }
        sendQueuesOfLines(text, from, end, wanted, queues, v6, peers);
      } catch {
        /* a line we cannot read: those sockets fall back to the handle's counters */
      } finally {
        samplingStats.parseMs += performance.now() - t0;
      }
    };
    const step = (): void => {
      fs.read(fd, buf, 0, buf.length, null, (e, n) => {
        if (e !== null) return finish(false);
        if (n === 0) {
          if (carry !== '') parse(carry, carry.length);
          return finish(true);
        }
        const text = carry + buf.toString('latin1', 0, n);
        const last = text.lastIndexOf('\n');
        if (last < 0) {
          carry = text;
        } else {
          parse(text, last + 1);
          // (a slice keeps this chunk's text until the next chunk is joined to it: two chunks at most)
          carry = text.slice(last + 1);
        }
        if (allFound(wanted, queues, peers)) return finish(true);
        step();
      });
    };
    step();
  });
}

/** Every wanted send queue is in, and every wanted client socket on this host was seen. */
function allFound(wanted: ReadonlyMap<number, unknown>, queues: Map<number, number>, peers: PeerScan | null): boolean {
  return queues.size === wanted.size && (peers === null || peers.found === peers.pairs.size);
}

/** A stream whose kernel sample is wanted: its record, the handle's accepted bytes at the sweep, the stream, its episode then. */
type Wanted = [Progress, number, StreamState, number];

/**
 * One asynchronous read of the proc tables for the wanted sockets. A sample pairs the send queue, printed by the
 * kernel at some moment of the read, with the handle's accepted bytes taken at the sweep (`issuedAt`): it is
 * recorded only when both describe the same moment and the same blocked episode (see `done`).
 */
function readQueues(wanted: Map<number, Wanted>, issuedAt: number, peers: PeerScan | null): void {
  procBusy = true;
  samplingStats.issued++;
  const queues = new Map<number, number>();
  // one buffer for every read of this sampling, dropped with it
  const chunk = Buffer.allocUnsafe(PROC_CHUNK);
  let i = 0;
  const next = (): void => {
    const file = PROC_FILES[i++];
    if (file === undefined || allFound(wanted, queues, peers)) return done();
    readTable(file, file === PROC_FILES[1], wanted, queues, peers, chunk, next);
  };
  const done = (): void => {
    const took = performance.now() - issuedAt;
    samplingStats.procMs += took;
    nextProcAt = issuedAt + Math.min(took * PROC_COST_FACTOR, MAX_PROC_INTERVAL_MS);
    nextDueAt = issuedAt + took * DUE_COST_FACTOR;
    lastReadMs = Math.max(0, took);
    procBusy = false;
    const seenBy = performance.now();
    const sampled: StreamState[] = [];
    for (const [inode, [p, acc, s, episode]] of wanted) {
      if (p.inode !== inode || !p.kernel) continue;
      // The write drained (and maybe blocked again) while the table was read: the sample belongs to an episode
      // that is over, and says nothing about the new one.
      if (s.blockedSince !== episode || p.episode !== episode) continue;
      const q = queues.get(inode);
      if (q === undefined || Number.isNaN(acc)) {
        // Not in the tables (closed meanwhile, or not TCP): the handle's counters alone from now on.
        p.inode = 0;
        p.kernel = false;
        p.firstAt = -1;
        p.sampledAt = -1;
        continue;
      }
      const accNow = accepted(osHandle(s.res?.socket as Socket | null | undefined));
      if (accNow !== acc) {
        // The kernel accepted bytes from the socket during the read (it had room: the client took some), so the
        // send queue may be from after that and `acc - q` from no single moment: progress, but no sample.
        if (accNow > acc) p.progressAt = Math.max(p.progressAt, seenBy);
        continue;
      }
      // A client on this host: bytes in its socket's receive queue are not read yet (issue 19's healthy-service flake:
      // the queue shrank with every read of the client while the send queue waited seconds for a window update).
      let rx = 0;
      if (p.peer !== 0 && p.peerKey >= 0 && peers !== null) {
        const r = peerReceiveQueue(peers, inode, p.peerKey);
        if (p.sampledAt < 0) {
          p.peer = r >= 0 ? 1 : 0;
        } else if (r < 0) {
          // the client's socket left the tables: the send queue alone from now on, from a new baseline
          p.peer = 0;
          p.firstAt = -1;
          p.sampledAt = -1;
        }
        if (p.peer === 1) rx = r;
      } else if (p.sampledAt < 0) {
        p.peer = 0;
      }
      record(p, acc - q - rx, issuedAt, seenBy);
      sampled.push(s);
    }
    if (onSampled !== null && sampled.length > 0) onSampled(sampled);
  };
  next();
}

/**
 * The one rule for "stalled": a blocked write whose samples have shown no progress for longer than
 * stallAfterMs (since it blocked, or since the last progress). The detector, `stream_stalled` and
 * `healthHandler()` use it. `now` is unused by the rule itself: the evidence is the samples.
 */
export function isStalled(s: StreamState, now: number): boolean {
  void now;
  if (s.blockedSince < 0) return false;
  const p = progressOf(s);
  if (p === null || p.episode !== s.blockedSince || p.sampledAt <= p.firstAt) return false;
  return p.sampledAt - sinceOf(p, s) > limitOf(p, s);
}

/**
 * Whether only a sample taken now can tell stalled from slow: the stream's threshold has passed since its last
 * sample, which did not show a stall yet.
 */
export function dueForSample(p: Progress, s: StreamState, now: number): boolean {
  if (p.episode !== s.blockedSince) return false;
  // no baseline yet: the span that can show a stall starts only with it
  if (p.sampledAt < 0) return true;
  const since = sinceOf(p, s);
  const limit = limitOf(p, s);
  return now - since > limit && p.sampledAt - since <= limit;
}

/**
 * Since when the stream has shown no progress: the last sample that saw progress, else the block, but never
 * more than `unmeasuredLeadMs` before the baseline (the first sample of the episode, as of when its value was
 * known). A stall is claimed only from at least two samples.
 */
function sinceOf(p: Progress, s: StreamState): number {
  return Math.max(p.progressAt, s.blockedSince, p.firstAt - unmeasuredLeadMs(s.config.stallAfterMs, p.firstReadMs));
}

/** How long the samples of the stream's current blocked episode have shown no progress (0 without two samples). */
export function noProgressMs(s: StreamState): number {
  const p = progressOf(s);
  if (p === null || p.episode !== s.blockedSince || p.sampledAt <= p.firstAt) return 0;
  return Math.max(0, p.sampledAt - sinceOf(p, s));
}

/** How long without progress is a stall: stallAfterMs, or more for a client seen taking bytes in steps. */
function limitOf(p: Progress, s: StreamState): number {
  const stall = s.config.stallAfterMs;
  return p.stepGap > 0 ? Math.max(stall, Math.min(STEP_ALLOWANCE * p.stepGap, MAX_STEP_STALL * stall)) : stall;
}

/** What the client was seen taking while the stream was blocked: bytes per second, and over how long. */
export function observedReadRate(s: StreamState): { bytesPerSec: number; overMs: number; kernel: boolean; h2: boolean; peer: boolean } {
  const p = progressOf(s);
  if (p === null || p.firstAt < 0 || p.sampledAt <= p.firstAt) return { bytesPerSec: 0, overMs: 0, kernel: p?.kernel ?? false, h2: p?.h2 ?? false, peer: p?.peer === 1 };
  const ms = p.sampledAt - p.firstAt;
  return { bytesPerSec: Math.max(0, ((p.delivered - p.firstDelivered) * 1000) / ms), overMs: ms, kernel: p.kernel, h2: p.h2, peer: p.peer === 1 };
}
