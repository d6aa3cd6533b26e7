export { instrument } from './instrument.js';
export { observeAll } from './observe.js';
export { metricsHandler } from './metrics-handler.js';
export { clusterMetricsHandler } from './cluster.js';
export { streams, onFinding, recentFindings, internalErrors } from './api.js';
export { DURATION_BUCKETS } from './metrics.js';
export { StreamscopeError, StreamClosedError, codes as errorCodes } from './errors.js';
export type { ErrorCode } from './errors.js';
export type { Finding, FindingKind, InstrumentOptions, Outcome, RouteOption, Severity, StreamSnapshot } from './types.js';
export { sse, SseStream, encodeEvent, encodeComment } from './sse/index.js';
export type { SseEvent, SseOptions } from './sse/index.js';
export { createHub, Hub } from './hub/hub.js';
export type { HubEvent, HubOptions, SubscribeOptions } from './hub/hub.js';
export { memoryStore, MemoryStore } from './hub/memory-store.js';
export type { MemoryStoreOptions } from './hub/memory-store.js';
export { redisStore, RedisStore } from './hub/redis-store.js';
export type { RedisStoreOptions, RedisLike } from './hub/redis-store.js';
export type { HubStore, StoredEvent, ChannelInfo } from './hub/store.js';
export { parseEventId, compareIds } from './hub/ids.js';
export { healthHandler, streamHealth } from './health.js';
export type { HealthOptions, StreamHealth } from './health.js';
export type { RateLimitOptions, ShedOptions } from './limits/index.js';
export { startAgent } from './agent/index.js';
export { channelNames } from './channels.js';
export type {
  StreamOpenMessage,
  StreamFirstWriteMessage,
  StreamWriteBlockedMessage,
  StreamDrainMessage,
  StreamCloseMessage,
  FindingMessage,
} from './channels.js';
