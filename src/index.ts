export { instrument } from './instrument.js';
export { observeAll } from './observe.js';
export { metricsHandler } from './metrics-handler.js';
export { streams, onFinding, recentFindings, internalErrors } from './api.js';
export { DURATION_BUCKETS } from './metrics.js';
export { StreamscopeError, StreamClosedError, codes as errorCodes } from './errors.js';
export type { ErrorCode } from './errors.js';
export type { Finding, FindingKind, InstrumentOptions, Outcome, RouteOption, Severity, StreamSnapshot } from './types.js';
