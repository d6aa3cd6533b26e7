import { getTracker } from '../../core/tracker.js';
import { StreamscopeError } from '../../errors.js';
import { encodeEvent, type EncodeOptions } from '../sse/encoder.js';
import { kNeedsDrain, kPush, kPushShared, SharedFrame, type SseStream } from '../sse/stream.js';
import { compareIds } from './ids.js';
import type { HubStore, StoredEvent } from './store.js';

/** One subscriber's path from replay to live, and one channel's fan-out on this instance. */

const tracker = getTracker();

const REPLAY_PAGE = 1000;
/** Replayed frames are written in batches of about this many characters. */
const REPLAY_WRITE = 32 * 1024;

/**
 * The live fan-out walks a channel's subscribers in slices, each in a turn of the event loop of its own: at most
 * FANOUT_SLICE subscribers written, and none past FANOUT_SLICE_MS from the slice's start once FANOUT_SLICE_MIN
 * are visited (the clock is read every 16). 10,000 subscribers are written in about 2 ms slices instead of one
 * 70 ms turn per event; events published while the walk goes on reach each subscriber together, in one write.
 */
export const FANOUT_SLICE = 1000;
export const FANOUT_SLICE_MS = 2;
const FANOUT_SLICE_MIN = 64;
/**
 * Events held for subscribers the walk has not reached yet. Past this (a publisher far faster than the fan-out),
 * the walk is finished at once, in the publish's turn, as every event was before slicing: memory stays bounded.
 */
export const FANOUT_QUEUE_MAX = 10000;

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
  /** Live: the fan-out's number of the last event it has had (or skipped); the walk writes it those after. */
  seq = 0;
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

  /** A live event while it replays: held until the replay is done (or dropped past maxPending, then replayed). */
  hold(ev: StoredEvent): void {
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
  constructor(readonly ev: StoredEvent) {}
  get(encode: EncodeOptions | undefined): SharedFrame {
    if (encode === undefined) return (this.plain ??= new SharedFrame(frameOf(this.ev, undefined)));
    return (this.crc ??= new SharedFrame(frameOf(this.ev, encode)));
  }
}

/** Several queued events' frames as one shared write, built once per run of events (and form) for every subscriber that needs that run. */
class Run {
  from = -1;
  to = -1;
  frame: SharedFrame | null = null;
}

/**
 * Subscribers of one channel on this instance: one follow on the store, one encode per event (and form), and
 * the walk that writes the events to them.
 *
 * Each event gets the next number (`seq`) and joins the queue; subscribers still replaying hold it at once
 * (`Sub.hold`). The live ones get it from the walk: a pass goes over the subscribers in their order (a Set's:
 * one that leaves is skipped, one that joins is visited), and writes to each every queued event after the last
 * it had, in one write (one chunk of the events' frames, built once for every subscriber at the same place).
 * The first slice runs in the publish's tick (process.nextTick: the events of one tick go together), the rest
 * one per immediate. A pass that saw events arrive is followed by another; one that saw none ends the walk.
 * When a pass ends, every subscriber has the events up to the pass's start, so they leave the queue.
 *
 * Latency: an event reaches every live subscriber by the end of the pass after the one under way when it was
 * published (or of the pass it starts): at most two passes, that is 2 × ceil(subscribers / FANOUT_SLICE) slices
 * when writes are fast, and 2 × ceil(subscribers / FANOUT_SLICE_MIN) at the very worst.
 */
export class Fanout {
  readonly subs = new Set<Sub>();
  /** Subscribers not live yet (replaying): each event is held for them at once. */
  private readonly joining = new Set<Sub>();
  unfollow: (() => void) | null = null;
  ready: Promise<void> | null = null;

  /** Number of the last event; the queue holds the events after `base` (queue[i] is event base + 1 + i). */
  private seq = 0;
  private base = 0;
  private queue: Frames[] = [];
  /** The pass under way (null: the next slice starts one), and the last event's number when it started. */
  private pass: Iterator<Sub> | null = null;
  private passSeq = 0;
  private walking = false;
  /** A slice is scheduled (a tick or an immediate): never two, so never two walks. */
  private scheduled = false;
  private immediate: NodeJS.Immediate | null = null;
  /** The number of the last event whose epoch differs from the one before it (0: none in this fan's life). */
  private epochChange = 0;
  private readonly runPlain = new Run();
  private readonly runCrc = new Run();

  /** @internal Counted for tests and the benchmark: slices run, subscribers written, most written in one slice. */
  readonly stats = { slices: 0, written: 0, maxSlice: 0 };

  add(sub: Sub): void {
    this.subs.add(sub);
    this.joining.add(sub);
  }

  remove(sub: Sub): void {
    this.subs.delete(sub);
    this.joining.delete(sub);
  }

  /**
   * A subscriber's replay is done (nothing left held): it follows from the last event that reached the fan-out,
   * each of which it had held; a store's live feed that lags behind the replay is skipped up to `floor`, once.
   */
  goLive(sub: Sub, floor: string): void {
    this.joining.delete(sub);
    sub.pending = null;
    sub.floor = floor;
    sub.seq = this.seq;
    sub.live = true;
  }

  readonly onEvent = (ev: StoredEvent): void => {
    const q = this.queue;
    if (q.length > 0 && q[q.length - 1]!.ev.epoch !== ev.epoch) this.epochChange = this.seq + 1;
    q.push(new Frames(ev));
    this.seq++;
    for (const sub of this.joining) {
      try {
        sub.hold(ev);
      } catch (err) {
        tracker.fault('hub', err);
      }
    }
    if (!this.walking) {
      this.walking = true;
      if (!this.scheduled) {
        this.scheduled = true;
        process.nextTick(runSlice, this);
      }
    } else if (q.length > FANOUT_QUEUE_MAX) {
      // the publisher outruns the walk: finish it now, as every event was before slicing
      while (this.walking) this.slice(false);
    }
  };

  /** @internal The scheduled slice (a tick or an immediate). */
  scheduledSlice(): void {
    this.scheduled = false;
    this.immediate = null;
    if (this.walking) this.slice(true);
  }

  /** One slice of the walk (all of it when not `bounded`); schedules the next if the walk goes on. */
  private slice(bounded: boolean): void {
    const until = bounded ? performance.now() + FANOUT_SLICE_MS : Infinity;
    let written = 0;
    let visited = 0;
    this.stats.slices++;
    for (;;) {
      if (this.pass === null) {
        this.pass = this.subs.values();
        this.passSeq = this.seq;
      }
      const next = this.pass.next();
      if (next.done === true) {
        this.pass = null;
        // every subscriber has the events up to the pass's start: they leave the queue
        this.trim(this.passSeq);
        if (this.seq === this.passSeq) {
          this.walking = false;
          break;
        }
        continue;
      }
      const sub = next.value;
      visited++;
      if (sub.live && sub.seq < this.seq) {
        written++;
        try {
          this.write(sub);
        } catch (err) {
          // This subscriber's events are lost to it (its number moved on): its stream ends, and its client
          // resumes after the last event it got, from the store. The walk goes on for the others.
          tracker.fault('hub', err);
          try {
            historyLost(sub.stream);
          } catch (e) {
            tracker.fault('hub', e);
          }
        }
      }
      if (bounded && (written >= FANOUT_SLICE || ((visited & 15) === 0 && visited >= FANOUT_SLICE_MIN && performance.now() >= until))) break;
    }
    this.stats.written += written;
    if (written > this.stats.maxSlice) this.stats.maxSlice = written;
    if (this.walking && !this.scheduled) {
      this.scheduled = true;
      this.immediate = setImmediate(runSlice, this);
    }
  }

  /** Writes `sub` every queued event after its last, in one write. */
  private write(sub: Sub): void {
    const q = this.queue;
    let i = sub.seq - this.base;
    sub.seq = this.seq;
    let end = q.length;
    // an event of another epoch: what comes before it is sent, then the stream ends (historyLost)
    if (this.epochChange > this.base + i || q[i]!.ev.epoch !== sub.epoch) {
      let j = i;
      while (j < end && q[j]!.ev.epoch === sub.epoch) j++;
      end = j;
    }
    const floor = sub.floor;
    if (floor !== null) {
      while (i < end && compareIds(q[i]!.ev.id, floor) <= 0) i++;
      if (i < end) sub.floor = null;
    }
    if (i < end) {
      const stream = sub.stream;
      const last = q[end - 1]!;
      if (end - i === 1) stream[kPushShared](last.get(sub.encode), last.ev.id);
      else stream[kPushShared](this.run(i, end, sub.encode), last.ev.id, true);
    }
    if (end < q.length) historyLost(sub.stream);
  }

  /** The frames of queue[from, to) in one shared write (the last run built is kept: the next subscribers are most often at the same place). */
  private run(from: number, to: number, encode: EncodeOptions | undefined): SharedFrame {
    const r = encode === undefined ? this.runPlain : this.runCrc;
    const a = this.base + from;
    const b = this.base + to;
    if (r.frame !== null && r.from === a && r.to === b) return r.frame;
    const q = this.queue;
    let text = '';
    for (let k = from; k < to; k++) text += q[k]!.get(encode).text;
    r.from = a;
    r.to = b;
    r.frame = new SharedFrame(text);
    return r.frame;
  }

  /** Drops the queued events up to number `upTo` (every subscriber has them). */
  private trim(upTo: number): void {
    const n = upTo - this.base;
    if (n <= 0) return;
    if (n >= this.queue.length) this.queue = [];
    else this.queue.splice(0, n);
    this.base = upTo;
    if (this.runPlain.from < upTo) this.runPlain.frame = null;
    if (this.runCrc.from < upTo) this.runCrc.frame = null;
  }

  /** The channel is dropped or the hub closed: the walk stops, nothing stays scheduled. */
  stop(): void {
    this.walking = false;
    this.pass = null;
    this.queue = [];
    this.base = this.seq;
    this.runPlain.frame = this.runCrc.frame = null;
    if (this.immediate !== null) {
      clearImmediate(this.immediate);
      this.immediate = null;
      this.scheduled = false;
    }
  }
}

function runSlice(fan: Fanout): void {
  fan.scheduledSlice();
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
        if (sub.fan !== null) sub.fan.goLive(sub, cursor);
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
