import diagnosticsChannel from 'node:diagnostics_channel';
import { getTracker, type TrackerListener } from '../core/tracker.js';
import type { StreamState } from '../core/stream-state.js';
import type { Finding, Outcome } from '../types.js';

/**
 * Lifecycle events as public API (docs/channels.md), the way undici publishes its own: every channel name
 * streamscope publishes is declared here and nowhere else. Each message is built only when the channel has
 * a subscriber, so an unsubscribed channel costs one property read per event.
 */
export const channelNames = Object.freeze({
  /** A response became a stream (docs/instrument.md, "what counts as a stream"). */
  open: 'streamscope:stream:open',
  /** The stream's first body byte was written. */
  firstWrite: 'streamscope:stream:first_write',
  /** A blocked episode began: `write()` returned false while not already blocked. */
  writeBlocked: 'streamscope:stream:write_blocked',
  /** A blocked episode ended (`drain`, or the stream closed while blocked). */
  drain: 'streamscope:stream:drain',
  /** The response closed: the message carries the outcome, bytes and writes. */
  close: 'streamscope:stream:close',
  /** A leak detector (or a guard) raised a finding. */
  finding: 'streamscope:finding',
});

export interface StreamOpenMessage {
  id: number;
  route: string;
  method: string;
  /** Epoch milliseconds. */
  startedAt: number;
  /** The response object (node:http `ServerResponse`, or HTTP/2's compatibility response). */
  response: unknown;
}

export interface StreamFirstWriteMessage {
  id: number;
  route: string;
  /** Open → first body byte, in milliseconds. */
  firstWriteMs: number;
}

export interface StreamWriteBlockedMessage {
  id: number;
  route: string;
  /** Bytes queued in user space when the write met backpressure. */
  bufferedBytes: number;
}

export interface StreamDrainMessage {
  id: number;
  route: string;
  /** How long the blocked episode lasted. */
  blockedMs: number;
}

export interface StreamCloseMessage {
  id: number;
  route: string;
  method: string;
  outcome: Outcome;
  durationMs: number;
  bytes: number;
  writes: number;
  blockedWrites: number;
  /** Open → first body byte in milliseconds, or null when nothing was written. */
  firstWriteMs: number | null;
  response: unknown;
}

export interface FindingMessage {
  finding: Finding;
}

const chOpen = diagnosticsChannel.channel(channelNames.open);
const chFirstWrite = diagnosticsChannel.channel(channelNames.firstWrite);
const chWriteBlocked = diagnosticsChannel.channel(channelNames.writeBlocked);
const chDrain = diagnosticsChannel.channel(channelNames.drain);
const chClose = diagnosticsChannel.channel(channelNames.close);
const chFinding = diagnosticsChannel.channel(channelNames.finding);

const round3 = (ms: number): number => Math.round(ms * 1000) / 1000;

/** Publishes the tracker's lifecycle events on the channels above (subscribed once per process). */
export const channelsListener: TrackerListener = {
  component: 'channels',
  open(s: StreamState) {
    if (!chOpen.hasSubscribers) return;
    const msg: StreamOpenMessage = { id: s.id, route: s.route, method: s.method, startedAt: Math.round(s.startedAt), response: s.res };
    chOpen.publish(msg);
  },
  firstWrite(s: StreamState) {
    if (!chFirstWrite.hasSubscribers) return;
    const msg: StreamFirstWriteMessage = { id: s.id, route: s.route, firstWriteMs: round3(s.firstWriteAt - s.t0) };
    chFirstWrite.publish(msg);
  },
  writeBlocked(s: StreamState) {
    if (!chWriteBlocked.hasSubscribers) return;
    const res = s.res;
    const msg: StreamWriteBlockedMessage = { id: s.id, route: s.route, bufferedBytes: res !== null && !res.destroyed ? res.writableLength : 0 };
    chWriteBlocked.publish(msg);
  },
  drain(s: StreamState, waitedMs: number) {
    if (!chDrain.hasSubscribers) return;
    const msg: StreamDrainMessage = { id: s.id, route: s.route, blockedMs: round3(waitedMs) };
    chDrain.publish(msg);
  },
  close(s: StreamState) {
    if (!chClose.hasSubscribers) return;
    const msg: StreamCloseMessage = {
      id: s.id,
      route: s.route,
      method: s.method,
      outcome: s.outcome as Outcome,
      durationMs: round3(s.closedAt - s.t0),
      bytes: s.bytes,
      writes: s.writes,
      blockedWrites: s.blockedWrites,
      firstWriteMs: s.firstWriteAt < 0 ? null : round3(s.firstWriteAt - s.t0),
      response: s.res,
    };
    chClose.publish(msg);
  },
  finding(_s: StreamState, f: Finding) {
    if (!chFinding.hasSubscribers) return;
    const msg: FindingMessage = { finding: f };
    chFinding.publish(msg);
  },
};

/** Registers the channels' publisher with the tracker (once per process). */
export function install(): void {
  getTracker().register(channelsListener);
}
