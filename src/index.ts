export { instrument } from './instrument.js';
export type { HttpHandler } from './instrument.js';
export { observeAll } from './observe.js';
export { shutdown } from './shutdown.js';
export { metricsHandler } from './consumers/metrics-handler.js';
export { clusterMetricsHandler } from './cluster.js';
export { streams, onFinding, recentFindings, internalErrors } from './api.js';
export { DURATION_BUCKETS } from './consumers/metrics.js';
export { StreamscopeError, StreamClosedError, codes as errorCodes } from './errors.js';
export type { ErrorCode } from './errors.js';
export type { Finding, FindingKind, InstrumentOptions, MetricsRegistry, Outcome, RouteOption, Severity, StreamSnapshot } from './types.js';
export { sse, encodeEvent, encodeComment } from './runtime/sse/index.js';
export { SseStream } from './runtime/sse/public.js';
export type { SseEvent, SseOptions } from './runtime/sse/index.js';
export { createHub } from './runtime/hub/hub.js';
export { Hub, MemoryStore, RedisStore } from './runtime/hub/public.js';
export type { HubEvent, HubOptions, SubscribeOptions } from './runtime/hub/hub.js';
export { memoryStore } from './runtime/hub/memory-store.js';
export type { EncodeOptions } from './runtime/sse/encoder.js';
export type { PublishOptions } from './runtime/hub/hub.js';
export type { MemoryStoreOptions } from './runtime/hub/memory-store.js';
export { redisStore } from './runtime/hub/redis-store.js';
export type { RedisStoreOptions, RedisLike } from './runtime/hub/redis-store.js';
export type { HubStore, StoredEvent, ChannelInfo, RangePage } from './runtime/hub/store.js';
export { parseEventId, compareIds } from './runtime/hub/ids.js';
export { healthHandler, streamHealth } from './runtime/health.js';
export type { HealthOptions, StreamHealth } from './runtime/health.js';
export type { RateLimitOptions, RateLimiter, RejectReason, ShedOptions } from './runtime/limits/index.js';
export { rateLimiter } from './runtime/limits/index.js';
export { startAgent } from './consumers/agent/index.js';
export type { Agent, AgentOptions } from './consumers/agent/index.js';
export { channelNames } from './consumers/channels.js';
export type {
  StreamOpenMessage,
  StreamFirstWriteMessage,
  StreamWriteBlockedMessage,
  StreamDrainMessage,
  StreamCloseMessage,
  FindingMessage,
} from './consumers/channels.js';
