import type { InstrumentOptions } from './types.js';
import type { StreamConfig } from './stream-state.js';
import { getMetricsSet, metricsListener, type MetricsSet } from './metrics.js';
import { tracingListener } from './tracing.js';
import { otelMetricsListener } from './otel-metrics.js';
import { detectorsListener } from './detectors/index.js';
import { channelsListener } from './channels.js';
import { getTracker } from './tracker.js';
import { invalidOption } from './errors.js';
import { guardsListener, resolveGuards } from './guards.js';

export const DEFAULTS = Object.freeze({ stallAfterMs: 5000, danglingAfterMs: 10000, maxRoutes: 200 });

const tracker = getTracker();

/** Subscribes the core consumers to the tracker once, even across copies of the package. */
export function ensureInstalled(): void {
  const has = (c: string): boolean => tracker.listeners.some((l) => l.component === c);
  if (!has('metrics')) tracker.subscribe(metricsListener);
  if (!has('tracing')) tracker.subscribe(tracingListener);
  if (!has('detectors')) tracker.subscribe(detectorsListener);
  if (!has('channels')) tracker.subscribe(channelsListener);
  if (!has('guards')) tracker.subscribe(guardsListener);
  if (!has('otel-metrics')) tracker.subscribe(otelMetricsListener);
}

function positive(name: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw invalidOption(name, 'a positive number', v);
  return v;
}

/** Validates options (a user error throws here, at setup, never per request) and resolves them once. */
export function resolveConfig(options: InstrumentOptions = {}): StreamConfig {
  if (options === null || typeof options !== 'object') throw invalidOption('options', 'an object', options);
  const stallAfterMs = positive('stallAfterMs', options.stallAfterMs, DEFAULTS.stallAfterMs);
  const danglingAfterMs = positive('danglingAfterMs', options.danglingAfterMs, DEFAULTS.danglingAfterMs);
  const maxRoutes = positive('maxRoutes', options.maxRoutes, DEFAULTS.maxRoutes);
  if (options.route !== undefined && typeof options.route !== 'string' && typeof options.route !== 'function') {
    throw invalidOption('route', 'a string or a function', options.route);
  }
  if (options.prefix !== undefined && (typeof options.prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(options.prefix))) {
    throw invalidOption('prefix', 'a valid Prometheus metric name prefix', options.prefix);
  }
  const guards = resolveGuards(options);
  ensureInstalled();
  let metrics: MetricsSet | null = null;
  try {
    metrics = getMetricsSet(options.registry, options.prefix ?? '', maxRoutes);
  } catch (err) {
    // A registry that throws must not break the app: stream without metrics, and count it.
    tracker.fault('metrics', err);
  }
  return Object.freeze({
    stallAfterMs,
    danglingAfterMs,
    trackAsync: options.trackAsync === true,
    captureStacks: options.captureStacks === true,
    tracer: options.tracer,
    route: options.route,
    metrics,
    guards,
  });
}
