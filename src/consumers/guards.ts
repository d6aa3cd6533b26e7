import type { Socket } from 'node:net';
import type { InstrumentOptions } from '../types.js';
import { Phase, type StreamState, type WriteGuard } from '../core/stream-state.js';
import { routeMetricsOf } from './metrics.js';
import { liveSpan } from './tracing.js';
import { getTracker, type TrackerListener } from '../core/tracker.js';
import { StreamClosedError, invalidOption } from '../errors.js';
import { kDeadPeer } from '../core/symbols.js';

/**
 * Opt-in guards (docs/guards.md). Off by default; `config.guards` is null unless one is on, so an
 * unguarded stream pays one null check per write. A guarded cut is outcome `error`, counted in
 * `stream_guard_actions_total{route, guard}`, raised as a `guard_action` finding (so it reaches
 * `onFinding`, the span and `diag top`), and attributed on the span (`stream.guard`).
 */

/** Values of the `guard` label of stream_guard_actions_total, known in advance. */
export const GUARD_NAMES = ['max_buffered_bytes', 'stalled_action', 'zombie_action', 'dead_peer'] as const;
export type GuardName = (typeof GUARD_NAMES)[number];

/** Resolved guards of one instrument() / adapter / register call (and their write-path hooks, for the core). */
export interface GuardConfig extends WriteGuard {
  /** Cut a response whose queued bytes exceed this; 0 = off. */
  readonly maxBufferedBytes: number;
  /** Cut a stream once `stalled_write` is raised for it. */
  readonly stalledDestroy: boolean;
  /** A write after close throws StreamClosedError. */
  readonly zombieThrow: boolean;
  /** TCP keep-alive idle time on streaming sockets (ms); 0 = off. */
  readonly deadPeerMs: number;
}

const tracker = getTracker();

/** This consumer's slot on each stream: true once zombieAction 'throw' has thrown (and counted) for it. */
const kSlot = tracker.slot('guards');

function positiveOrOff(name: string, v: unknown): number {
  if (v === undefined || v === 0 || v === false) return 0;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw invalidOption(name, 'a positive number (0 or absent: off)', v);
  return v;
}

/** Validates the guard options (at setup; a user error throws invalidOption). null when every guard is off. */
export function resolveGuards(options: InstrumentOptions): GuardConfig | null {
  const maxBufferedBytes = positiveOrOff('maxBufferedBytes', options.maxBufferedBytes);
  const deadPeerMs = positiveOrOff('deadPeerMs', options.deadPeerMs);
  if (deadPeerMs > 0 && deadPeerMs < 1000) throw invalidOption('deadPeerMs', 'at least 1000 (TCP keep-alive counts whole seconds)', deadPeerMs);
  const sa = options.stalledAction;
  if (sa !== undefined && sa !== 'none' && sa !== 'destroy') throw invalidOption('stalledAction', '"none" or "destroy"', sa);
  const za = options.zombieAction;
  if (za !== undefined && za !== 'none' && za !== 'throw') throw invalidOption('zombieAction', '"none" or "throw"', za);
  const stalledDestroy = sa === 'destroy';
  const zombieThrow = za === 'throw';
  if (maxBufferedBytes === 0 && deadPeerMs === 0 && !stalledDestroy && !zombieThrow) return null;
  return Object.freeze({ maxBufferedBytes, stalledDestroy, zombieThrow, deadPeerMs, blockedWrite: onBlockedWrite, zombieWrite });
}

/** Environment variables of `streamscope/register`, and the option each sets. */
export const GUARD_ENV = {
  STREAMSCOPE_GUARD_MAX_BUFFERED_BYTES: 'maxBufferedBytes',
  STREAMSCOPE_GUARD_STALLED_ACTION: 'stalledAction',
  STREAMSCOPE_GUARD_ZOMBIE_ACTION: 'zombieAction',
  STREAMSCOPE_GUARD_DEAD_PEER_MS: 'deadPeerMs',
} as const;

/**
 * Reads the STREAMSCOPE_GUARD_* variables. A bad value leaves that guard off and yields one line naming
 * the variable (register prints it); it never stops the app.
 */
export function guardOptionsFromEnv(env: NodeJS.ProcessEnv): { options: InstrumentOptions; errors: string[] } {
  const options: Record<string, unknown> = {};
  const errors: string[] = [];
  for (const [variable, option] of Object.entries(GUARD_ENV)) {
    const text = env[variable];
    if (text === undefined || text.trim() === '') continue;
    const numeric = option === 'maxBufferedBytes' || option === 'deadPeerMs';
    const value: unknown = numeric ? Number(text.trim()) : text.trim();
    try {
      resolveGuards({ [option]: value } as InstrumentOptions);
      options[option] = value;
    } catch (err) {
      errors.push(`streamscope: ${variable}="${text}" is invalid (${(err as Error).message}); that guard is off`);
    }
  }
  return { options: options as InstrumentOptions, errors };
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Counts a guard action: metric, finding (once per stream), span attribute. */
function record(s: StreamState, guard: GuardName, detail: string): void {
  routeMetricsOf(s)?.guardAction(guard).inc();
  liveSpan(s)?.setAttribute('stream.guard', guard);
  tracker.raise(s, 'guard_action', 'error', `guard ${guard}: ${detail}`);
}

/** Cuts an open stream: destroyed by the server, so its outcome is `error`; the client sees a reset and reconnects. */
function cut(s: StreamState, guard: GuardName, detail: string): void {
  const res = s.res;
  if (res === null || res.destroyed || s.phase !== Phase.Open) return;
  tracker.markError(s);
  record(s, guard, detail);
  res.destroy();
}

/** patchedWrite, on a write that returned false (never on the fast path): over the cap, cut. Called as `guards.blockedWrite()`. */
function onBlockedWrite(this: GuardConfig, s: StreamState, queued: number): void {
  if (this.maxBufferedBytes > 0 && queued > this.maxBufferedBytes) {
    cut(s, 'max_buffered_bytes', `${fmtBytes(queued)} queued exceeds maxBufferedBytes ${fmtBytes(this.maxBufferedBytes)}: the stream was cut`);
  }
}

/** A stream's resolved guards (src/setup.ts puts them on its config). */
function guardsOf(s: StreamState): GuardConfig | null {
  return (s.config.guards as GuardConfig | null | undefined) ?? null;
}

/** patchedWrite, on a write after close with zombieAction 'throw': counts the first one and throws. */
function zombieWrite(s: StreamState): never {
  if (s.slot(kSlot) === undefined) {
    s.setSlot(kSlot, true);
    try {
      record(s, 'zombie_action', 'a write after the stream closed threw StreamClosedError: the producer was stopped');
    } catch (err) {
      tracker.fault('guards', err);
    }
  }
  throw new StreamClosedError('stream closed: write() after the client left or the stream was cut (zombieAction: "throw")');
}

type WatchedSocket = Socket & { [kDeadPeer]?: true; _httpMessage?: object | null };

/**
 * How the kernel reports a peer that stopped answering: ETIMEDOUT after the keep-alive probes (or the
 * retransmissions) went unanswered, or the ICMP error it saw meanwhile (tcp_write_err reports a soft error first).
 */
const DEAD_PEER_CODES = new Set(['ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN']);

/** Dead-peer detection: keep-alive turns a peer that vanished into a socket error; count it. */
function onSocketError(this: WatchedSocket, err: NodeJS.ErrnoException): void {
  try {
    const code = err?.code;
    if (code === undefined || !DEAD_PEER_CODES.has(code)) return;
    const res = this._httpMessage;
    const s = res ? tracker.stateOf(res) : undefined;
    if (s === undefined || s.phase !== Phase.Open || guardsOf(s) === null || guardsOf(s)?.deadPeerMs === 0) return;
    tracker.serverCut(s);
    record(s, 'dead_peer', `the peer stopped answering (TCP keep-alive or retransmission timeout, ${code}): the stream was closed`);
  } catch (e) {
    tracker.fault('guards', e);
  }
}

export const guardsListener: TrackerListener = {
  component: 'guards',
  open(s) {
    const guards = guardsOf(s);
    // an unguarded stream: nothing for this consumer to act on, ever
    if (guards === null) return false;
    // The route's guard series exist once a guarded stream opens there (series that pay their way).
    routeMetricsOf(s)?.usesGuards();
    if (guards.deadPeerMs === 0) return;
    const socket = s.res?.socket as WatchedSocket | null | undefined;
    if (!socket || typeof socket.setKeepAlive !== 'function') return;
    socket.setKeepAlive(true, guards.deadPeerMs);
    if (socket[kDeadPeer] === undefined) {
      socket[kDeadPeer] = true;
      socket.on('error', onSocketError);
    }
  },
  finding(s, f) {
    if (f.kind !== 'stalled_write') return;
    const guards = guardsOf(s);
    if (guards === null || !guards.stalledDestroy) return;
    // After the stalled_write finding has reached every listener, so that they see it before the cut's own finding.
    const detail = `stalled_write (${f.detail}): the stream was cut`;
    queueMicrotask(() => {
      try {
        cut(s, 'stalled_action', detail);
      } catch (err) {
        tracker.fault('guards', err);
      }
    });
  },
};

/** Registers the guards with the tracker (once per process). */
export function install(): void {
  tracker.register(guardsListener);
}
