/** One stored event. `data` is the text sent as `data:` (JSON already applied). */
export interface StoredEvent {
  /** `<epoch>:<ms>-<seq>` (see ids.ts). */
  readonly id: string;
  /** The epoch of the store's history this event belongs to (the part of `id` before `:`). */
  readonly epoch: string;
  readonly event: string | undefined;
  readonly data: string;
}

/** One page of a replay, with the epoch the store was in when it read it (an empty page still has one). */
export interface RangePage {
  /** The store's epoch at the read: another than the reader's means the history it followed is gone. */
  epoch: string;
  events: StoredEvent[];
}

/** What a store knows about a channel's retained window. */
export interface ChannelInfo {
  /** The store's current epoch: ids of any other epoch were issued by a history the store has lost. */
  epoch: string;
  /** Oldest retained id (`<epoch>:<ms>-<seq>`), or null when the channel holds nothing. */
  first: string | null;
  /** Last id ever issued on the channel in this epoch (`<epoch>:0-0` when none). */
  last: string;
  /** True when events have been dropped from the head (maxEvents / MAXLEN). */
  trimmed: boolean;
}

/**
 * Where a hub keeps events. Ids are `<epoch>:<ms>-<seq>`, `<ms>-<seq>` strictly increasing per channel
 * within an epoch. The epoch changes whenever the store loses its history (a restart without persistence,
 * a flush); each result carries the epoch it was read in. `follow` delivers each event appended after it
 * resolves, once and in id order, to its listener. A store rejects a call that cannot complete (including
 * one past its deadline) rather than leave it pending.
 */
export interface HubStore {
  readonly kind: string;
  /** Appends; resolves to the new event's id. */
  append(channel: string, event: string | undefined, data: string): Promise<string>;
  /**
   * Optional: appends unless an event with the same `key` was appended to the channel within the store's key
   * window, atomically with that check; resolves to the id of the event stored under the key (the new one, or
   * the first one). `hub.publish(channel, event, { key })` needs it.
   */
  appendOnce?(channel: string, event: string | undefined, data: string, key: string): Promise<string>;
  /**
   * Events with `<ms>-<seq>` greater than that of `after` (its epoch is not looked at), oldest first, at most
   * `count`, and the epoch the store was in when it read them: a replay that finds nothing must still learn
   * that the history it was replaying is gone.
   */
  range(channel: string, after: string, count: number): Promise<RangePage>;
  info(channel: string): Promise<ChannelInfo>;
  /** Follows new events of a channel; resolves to an unfollow function once following. */
  follow(channel: string, listener: (ev: StoredEvent) => void): Promise<() => void>;
  close(): Promise<void>;
}
