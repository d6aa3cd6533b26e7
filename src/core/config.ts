import type { InstrumentOptions } from '../types.js';
import type { StreamConfig } from './stream-state.js';
import { invalidOption } from '../errors.js';

export const DEFAULTS = Object.freeze({ stallAfterMs: 5000, danglingAfterMs: 10000, bufferedAfterMs: 2000, maxRoutes: 200 });

function positive(name: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw invalidOption(name, 'a positive number', v);
  return v;
}

/**
 * The core's settings: validates its options (a user error throws here, at setup, never per request).
 * src/setup.ts adds the consumers' (metric set, guards) and installs the consumers.
 */
export function resolveCoreConfig(options: InstrumentOptions = {}): StreamConfig & { readonly maxRoutes: number } {
  if (options === null || typeof options !== 'object') throw invalidOption('options', 'an object', options);
  const stallAfterMs = positive('stallAfterMs', options.stallAfterMs, DEFAULTS.stallAfterMs);
  const danglingAfterMs = positive('danglingAfterMs', options.danglingAfterMs, DEFAULTS.danglingAfterMs);
  const bufferedAfterMs = positive('bufferedAfterMs', options.bufferedAfterMs, DEFAULTS.bufferedAfterMs);
  if (options.writeGaps !== undefined && typeof options.writeGaps !== 'boolean') throw invalidOption('writeGaps', 'a boolean', options.writeGaps);
  const maxRoutes = positive('maxRoutes', options.maxRoutes, DEFAULTS.maxRoutes);
  if (options.route !== undefined && typeof options.route !== 'string' && typeof options.route !== 'function') {
    throw invalidOption('route', 'a string or a function', options.route);
  }
  if (options.prefix !== undefined && (typeof options.prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(options.prefix))) {
    throw invalidOption('prefix', 'a valid Prometheus metric name prefix', options.prefix);
  }
  return {
    maxRoutes,
    stallAfterMs,
    danglingAfterMs,
    bufferedAfterMs,
    writeGaps: options.writeGaps === true,
    trackAsync: options.trackAsync === true,
    captureStacks: options.captureStacks === true,
    tracer: options.tracer,
    route: options.route,
  };
}
