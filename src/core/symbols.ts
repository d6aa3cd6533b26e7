/**
 * Private state lives on symbols from this one file. `Symbol.for` keys make two copies of the
 * package (ESM and CJS, or two versions) share one tracker and never count a response twice.
 */
export const kState = Symbol.for('streamscope.state');
export const kInstrumented = Symbol.for('streamscope.instrumented');
export const kTracker = Symbol.for('streamscope.tracker');
export const kMetricsSets = Symbol.for('streamscope.metrics');
/** The metrics' gauge fold generation (src/consumers/metrics.ts), shared: one copy folds, every copy's scrape reads. */
export const kMetricsFold = Symbol.for('streamscope.metricsFold');
/** On a registry served by metricsHandler(): called when a metric set of it makes a route (exposition pre-renders). */
export const kMetricsRouteAdded = Symbol.for('streamscope.metricsRouteAdded');
export const kObserver = Symbol.for('streamscope.observer');
export const kAgent = Symbol.for('streamscope.agent');
export const kStreamIds = Symbol.for('streamscope.streamIds');
/** observeAll: a response marked with it is not observed (shared, so either copy's mark counts). */
export const kIgnore = Symbol.for('streamscope.ignore');
/** The CPU profiler's route labeler (src/consumers/cpu-labels.ts), shared by the ESM and CJS copies. */
export const kCpuLabeler = Symbol.for('streamscope.cpuLabeler');
/** Dead-peer guard state on a socket (src/consumers/guards.ts); per copy. */
export const kDeadPeer = Symbol('streamscope.deadPeer');
/** sse()'s internal interface to the hub (src/runtime/sse/stream.ts); per copy: an SseStream is driven by its own copy. */
export const kSsePush = Symbol('streamscope.sse.push');
export const kSseOpen = Symbol('streamscope.sse.open');
export const kSseOnClose = Symbol('streamscope.sse.onClose');
export const kSseState = Symbol('streamscope.sse.state');
export const kSseNeedsDrain = Symbol('streamscope.sse.needsDrain');
export const kRegistered = Symbol.for('streamscope.registered');  // register.ts
export const kOrigRespond = Symbol('streamscope.h2.respond');  // core/http2-hook.ts
export const kHooked = Symbol.for('streamscope.http2.hooked');  // core/http2-hook.ts
export const kServerHooked = Symbol.for('streamscope.http2.server');  // core/http2-hook.ts
export const kH2State = Symbol('streamscope.h2.state');  // core/http2.ts
export const kH2Orig = Symbol('streamscope.h2.orig');  // core/http2.ts
export const kRoute = Symbol.for('streamscope.route');  // core/routes.ts
export const kAbove = Symbol.for('streamscope.above');  // core/above.ts (shared: the state is)
export const kStreamscopeError = Symbol.for('streamscope.error');  // errors.ts
export const kStreamClosed = Symbol.for('streamscope.error.stream_closed');  // errors.ts
/*
 * One key is also written out in src/consumers/agent/protocol.ts: `Symbol.for('streamscope.tracker')` inside the
 * code the inspector evaluates in a target, which must be self-contained (test/agent-inspector-parity.test.ts
 * fails if the two drift).
 */
export const kSwitch = Symbol.for('streamscope.switch');  // core/switch.ts
export const kOrigEmit = Symbol('streamscope.h2.emit');  // core/http2-hook.ts
export const kSsePushShared = Symbol('streamscope.sse.pushShared');  // runtime/sse/stream.ts (the hub's live fan-out)
/** The stream an async resource belongs to (trackAsync on Node 20: carried from resource to resource by one init hook). */
export const kAsyncStream = Symbol('streamscope.stream');  // consumers/detectors/async-tracking.ts
