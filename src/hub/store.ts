/** One stored event. `data` is the text sent as `data:` (JSON already applied). */
export interface StoredEvent {
  readonly id: string;
  readonly event: string | undefined;
  readonly data: string;
}

/** What a store knows about a channel's retained window. */
export interface ChannelInfo {
  /** Oldest retained id, or null when the channel holds nothing. */
  first: string | null;
  /** Last id ever issued on the channel ('0-0' when none). */
  last: string;
  /** True when events have been dropped from the head (maxEvents / MAXLEN). */
  trimmed: boolean;
}

/**
 * Where a hub keeps events. Ids are `<ms>-<seq>` and strictly increasing per channel. `follow`
 * delivers each event appended after it resolves, once and in id order, to its listener.
 */
export interface HubStore {
  readonly kind: string;
  append(channel: string, event: string | undefined, data: string): Promise<string>;
  /** Events with id greater than `after`, oldest first, at most `count`. */
  range(channel: string, after: string, count: number): Promise<StoredEvent[]>;
  info(channel: string): Promise<ChannelInfo>;
  /** Follows new events of a channel; resolves to an unfollow function once following. */
  follow(channel: string, listener: (ev: StoredEvent) => void): Promise<() => void>;
  close(): Promise<void>;
}
