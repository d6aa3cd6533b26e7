import type { StreamState } from './stream-state.js';

type Slot = 'openSlot' | 'lingerSlot';

/**
 * The tracker's sets of streams: an array with each stream's index on the stream itself, so adding
 * and removing are O(1) with no hashing and no tombstones (a Map keyed by id showed up at ~10 % of the
 * per-stream cost). `values()` iterates a snapshot; `each()` walks the list itself (the sweep, scrapes).
 */
export class StreamList {
  private readonly items: StreamState[] = [];
  private readonly slot: Slot;

  constructor(slot: Slot) {
    this.slot = slot;
  }

  get size(): number {
    return this.items.length;
  }

  has(s: StreamState): boolean {
    const i = s[this.slot];
    return i >= 0 && this.items[i] === s;
  }

  add(s: StreamState): void {
    if (this.has(s)) return;
    s[this.slot] = this.items.length;
    this.items.push(s);
  }

  delete(s: StreamState): boolean {
    if (!this.has(s)) return false;
    const i = s[this.slot];
    const last = this.items.pop() as StreamState;
    if (last !== s) {
      this.items[i] = last;
      last[this.slot] = i;
    }
    s[this.slot] = -1;
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
