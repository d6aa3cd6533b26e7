import { getTracker } from '../../core/tracker.js';
import { StreamscopeError } from '../../errors.js';
import { encodeEvent, type EncodeOptions } from '../sse/encoder.js';
import type { Socket } from 'node:net';
import { kCork, kNeedsDrain, kPush, kPushShared, SharedFrame, type SseStream } from '../sse/stream.js';
import { compareIds } from './ids.js';
import type { HubStore, StoredEvent } from './store.js';

/** One subscriber's path from replay to live, and one channel's fan-out on this instance. */

const tracker = getTracker();

const REPLAY_PAGE = 1000;
/** Replayed frames are written in batches of about this many characters. */
const REPLAY_WRITE = 32 * 1024;

/** One subscriber: replays, then follows. */
export class Sub {
  constructor(
    readonly stream: SseStream,
    private readonly maxPending: number,
    /** How this subscriber's frames are encoded (`checksum`), from its resolved options. */
    readonly encode: EncodeOptions | undefined = undefined,
  ) {}
  live = false;
  /** Set when its stream is opened; hub.close() leaves one not yet opened to its subscribe (which answers 503). */
  opened = false;
  pending: Array<StoredEvent> | null = [];
  overflow = false;
  /** Last id sent before going live: live events up to it are already sent (checked until passed). */
  floor: string | null = null;
  /** The store epoch this subscriber's ids belong to (set once its start is settled). */
  epoch = '';
  /** Where it leaves when its stream closes (set when the stream opens): fields, not a closure per subscriber. */
  hub: { leave(channel: string, fan: Fanout, sub: Sub): void } | null = null;
  channel = '';
  fan: Fanout | null = null;

  /** Its stream closed: it leaves the channel (the stream's close hook). */
  onStreamClose(): void {
    const hub = this.hub;
    const fan = this.fan;
    this.hub = null;
    if (hub !== null && fan !== null) hub.leave(this.channel, fan, this);
  }

  deliver(ev: StoredEvent, frames: Frames): void {
    if (this.live) {
      if (ev.epoch !== this.epoch) {
        historyLost(this.stream);
        return;
      }
      if (this.floor !== null) {
        if (compareIds(ev.id, this.floor) <= 0) return;
        this.floor = null;
      }
      this.stream[kPushShared](frames.get(this.encode), ev.id);
      return;
    }
    const p = this.pending;
    if (p === null) return;
    if (p.length >= this.maxPending) {
      this.overflow = true;
      this.pending = [];
      return;
    }
    p.push(ev);
  }
}

/**
 * One event's frames, encoded at most once per form (plain, with checksum) whatever the number of
 * subscribers: the text and its bytes (raw and as an HTTP/1.1 chunk), shared by every subscriber's socket.
 * The id line is the event's own, the same for everyone; a subscriber that must not get this event (its
 * replay already sent it, another epoch) is skipped before its frame is asked for.
 */
class Frames {
  private plain: SharedFrame | null = null;
  private crc: SharedFrame | null = null;
  constructor(private readonly ev: StoredEvent) {}
  get(encode: EncodeOptions | undefined): SharedFrame {
    if (encode === undefined) return (this.plain ??= new SharedFrame(frameOf(this.ev, undefined)));
    return (this.crc ??= new SharedFrame(frameOf(this.ev, encode)));
  }
}

/** Subscribers of one channel on this instance: one follow on the store, one encode per event (and form). */
export class Fanout {
  readonly subs = new Set<Sub>();
  unfollow: (() => void) | null = null;
  ready: Promise<void> | null = null;

  /** Events fanned out in this tick; from the second one on, the subscribers' sockets are corked until the tick ends. */
  private inTick = 0;
  private corked: Socket[] | null = null;

  readonly onEvent = (ev: StoredEvent): void => {
    if (this.inTick++ === 0) process.nextTick(endTick, this);
    else if (this.inTick === 2) this.cork();
    const frames = new Frames(ev);
    for (const sub of this.subs) {
      try {
        sub.deliver(ev, frames);
      } catch (err) {
        tracker.fault('hub', err);
        return;
      }
    }
  };

  /** A burst: one event went out alone, the rest of the tick's go out in one write per socket. */
  private cork(): void {
    const corked: Socket[] = [];
    for (const sub of this.subs) {
      if (!sub.live) continue;
      const sock = sub.stream[kCork]();
      if (sock !== null) corked.push(sock);
    }
    this.corked = corked;
  }

  /** @internal The tick is over: its events are written. */
  endTick(): void {
    this.inTick = 0;
    const corked = this.corked;
    if (corked === null) return;
    this.corked = null;
    for (const sock of corked) {
      try {
        sock.uncork();
      } catch (err) {
        tracker.fault('hub', err);
      }
    }
  }
}

function endTick(fan: Fanout): void {
  fan.endTick();
}

/**
 * The store lost its history under an open stream (an event of another epoch arrived): whatever came
 * between the last event sent and it is gone. The stream ends; the client reconnects with its last id,
 * which is of the old epoch, and gets 416 or a `reset` event — never a silent gap.
 */
export function historyLost(stream: SseStream): void {
  if (!stream.closed) stream.close();
}

export function frameOf(ev: StoredEvent, encode: EncodeOptions | undefined): string {
  return encodeEvent({ id: ev.id, event: ev.event, data: ev.data }, encode);
}

/**
 * Replays after `from` (the client's Last-Event-ID, or a first connection's anchor), drains the live events
 * held meanwhile, and hands the subscriber to the live fan-out in the same tick as it finds nothing left, so
 * no event slips between. Too many held events (a long replay under heavy publishing) are dropped and
 * replayed from the store.
 */
export async function catchUp(store: HubStore, channel: string, sub: Sub, from: string): Promise<void> {
  const stream = sub.stream;
  let cursor = from;
  const replay = async (): Promise<boolean> => {
    for (;;) {
      const { epoch, events: page } = await store.range(channel, cursor, REPLAY_PAGE);
      if (stream.closed) return false;
      // The store lost the history this replay follows (a flush or a restart without persistence while the
      // page was read): even an empty page says so. Without this check an empty page ended the replay, and
      // the live events held meanwhile (read from the old history) went out after a hole.
      if (epoch !== sub.epoch) {
        historyLost(stream);
        return false;
      }
      // Frames are batched into writes of up to REPLAY_WRITE characters: one syscall and one
      // chunk per batch instead of per event.
      let batch = '';
      let batchId = '';
      for (const ev of page) {
        if (ev.epoch !== sub.epoch) {
          // what is sent so far is contiguous; the rest belongs to a history that does not follow it
          if (batch !== '') stream[kPush](batch, batchId);
          historyLost(stream);
          return false;
        }
        batch += frameOf(ev, sub.encode);
        batchId = ev.id;
        if (batch.length >= REPLAY_WRITE) {
          if (!stream[kPush](batch, batchId)) return false;
          cursor = batchId;
          batch = '';
          if (stream[kNeedsDrain]) await stream.whenWritable();
        }
      }
      if (batch !== '') {
        if (!stream[kPush](batch, batchId)) return false;
        cursor = batchId;
        if (stream[kNeedsDrain]) await stream.whenWritable();
      }
      if (page.length < REPLAY_PAGE) return true;
    }
  };
  try {
    if (!(await replay())) return;
    for (;;) {
      if (sub.overflow) {
        sub.overflow = false;
        sub.pending = [];
        if (!(await replay())) return;
        continue;
      }
      const batch = sub.pending ?? [];
      if (batch.length === 0) {
        // Live from here. A store's live feed may lag behind what the replay read (Redis: the
        // blocking reader vs XRANGE): events up to the cursor are skipped once, by id.
        sub.pending = null;
        sub.floor = cursor;
        sub.live = true;
        return;
      }
      sub.pending = [];
      for (const ev of batch) {
        if (ev.epoch !== sub.epoch) {
          historyLost(stream);
          return;
        }
        if (compareIds(ev.id, cursor) <= 0) continue;
        if (!stream[kPush](frameOf(ev, sub.encode), ev.id)) return;
        cursor = ev.id;
        if (stream[kNeedsDrain]) await stream.whenWritable();
        if (sub.overflow) break;
      }
    }
  } catch (err) {
    if (stream.closed) return;
    tracker.fault('hub', err);
    stream.fail(new StreamscopeError('STREAMSCOPE_ERR_PRODUCER', 'event store failed during replay'));
  }
}
