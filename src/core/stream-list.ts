import type { StreamState } from './stream-state.js';

/**
 * The tracker's sets of streams: an array with each stream's index on the stream itself, so adding
 * and removing are O(1) with no hashing and no tombstones (a Map keyed by id showed up at ~10 % of the
 * per-stream cost). `values()` iterates a snapshot; `each()` walks the list itself (the sweep, scrapes).
 */
export abstract class StreamList {
  private readonly items: StreamState[] = [];
  /** The walk in slices under way (`startWalk`/`nextInWalk`): the index it goes on below; -1 when none is. */
  private cursor = -1;

  /** The stream's index in this list (-1: not in it); a field of its own per list, read without a computed key. */
  protected abstract index(s: StreamState): number;
  protected abstract setIndex(s: StreamState, i: number): void;

  get size(): number {
    return this.items.length;
  }

  has(s: StreamState): boolean {
    const i = this.index(s);
    return i >= 0 && this.items[i] === s;
  }

  add(s: StreamState): void {
    if (this.has(s)) return;
    this.setIndex(s, this.items.length);
    this.items.push(s);
  }

  delete(s: StreamState): boolean {
    if (!this.has(s)) return false;
    const i = this.index(s);
    const last = this.items.pop() as StreamState;
    if (last !== s) {
      this.items[i] = last;
      this.setIndex(last, i);
    }
    this.setIndex(s, -1);
    return true;
  }

  values(): IterableIterator<StreamState> {
    return this.items.slice().values();
  }

  /** Is a walk in slices under way (started, not done)? */
  get walking(): boolean {
    return this.cursor >= 0;
  }

  /** Starts a walk in slices, from the last stream, unless one is under way (which goes on). */
  startWalk(): void {
    if (this.cursor < 0) this.cursor = this.items.length;
  }

  /**
   * The next stream of the walk under way (last first), or undefined when the walk is done (it then ends). Between
   * two calls the list may change: every stream that was in the list when the walk started and still is is
   * returned at least once, since a removal moves only the last stream, and only down: a stream not reached yet
   * stays below the cursor, and one reached may come again (a check is idempotent); a stream added since waits for
   * the next walk.
   */
  nextInWalk(): StreamState | undefined {
    const items = this.items;
    if (this.cursor > items.length) this.cursor = items.length;
    if (this.cursor <= 0) {
      this.cursor = -1;
      return undefined;
    }
    return items[--this.cursor];
  }

  /**
   * Calls `fn` for every stream, without a copy, last first: removing the current stream (or any
   * visited one) during the walk is safe, since a removal only moves an already visited stream.
   */
  each(fn: (s: StreamState) => void): void {
    const items = this.items;
    for (let i = items.length - 1; i >= 0; i--) {
      const s = items[i];
      if (s !== undefined) fn(s);
    }
  }
}

/**
 * Streams whose response has not closed. The index is `StreamState.listSlot`, which the lingering list shares: a
 * stream is in one of them at most, and `has()` checks the item at the index.
 */
export class OpenStreams extends StreamList {
  protected index(s: StreamState): number {
    return s.listSlot;
  }
  protected setIndex(s: StreamState, i: number): void {
    s.listSlot = i;
  }
}

/** Closed streams their producer still holds (`StreamState.listSlot`, see OpenStreams). */
export class LingeringStreams extends StreamList {
  protected index(s: StreamState): number {
    return s.listSlot;
  }
  protected setIndex(s: StreamState, i: number): void {
    s.listSlot = i;
  }
}

/**
 * Open streams in a blocked episode (`write()` returned false, no `drain` yet): the tracker adds one at `writeBlocked`
 * and removes it at `drain` (or close, which ends the episode), so the sweep's stall checks visit these, not every
 * open stream. The index is `StreamState.blockedSlot` (in the stream's rarely used fields: a blocked stream has them).
 */
export class BlockedStreams extends StreamList {
  protected index(s: StreamState): number {
    return s.blockedSlot;
  }
  protected setIndex(s: StreamState, i: number): void {
    s.blockedSlot = i;
  }
}
