import type { StreamState } from './stream-state.js';

type Slot = 'openSlot' | 'lingerSlot';

/**
 * The tracker's sets of streams: an array with each stream's index on the stream itself, so adding
 * and removing are O(1) with no hashing and no tombstones (a Map keyed by id showed up at ~10 % of the
 * per-stream cost). `values()` iterates a snapshot, so callers may remove while they iterate.
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
}
