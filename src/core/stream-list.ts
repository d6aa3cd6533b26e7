import type { StreamState } from './stream-state.js';

/**
 * The tracker's sets of streams: an array with each stream's index on the stream itself, so adding
 * and removing are O(1) with no hashing and no tombstones (a Map keyed by id showed up at ~10 % of the
 * per-stream cost). `values()` iterates a snapshot; `each()` walks the list itself (the sweep, scrapes).
 */
export abstract class StreamList {
  private readonly items: StreamState[] = [];

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
