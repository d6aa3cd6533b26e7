import type { StreamConfig } from '../../src/core/stream-state.js';

/** A stream's config for unit tests of the detectors' logic on tracker states (no sockets): no metrics, no tracer. */
export function unitConfig(route: string, stallAfterMs: number, danglingAfterMs: number): StreamConfig {
  return Object.freeze({ stallAfterMs, danglingAfterMs, trackAsync: false, captureStacks: false, tracer: undefined, route, metrics: null }) as StreamConfig;
}
