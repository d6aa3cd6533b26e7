import type { InstrumentOptions } from './types.js';
import type { StreamConfig } from './stream-state.js';
import { resolveCoreConfig } from './config.js';
import { getTracker } from './tracker.js';
import { getMetricsSet, install as installMetrics, type MetricsSet } from './metrics.js';
import { install as installTracing } from './tracing.js';
import { install as installDetectors } from './detectors/index.js';
import { install as installChannels } from './channels.js';
import { install as installGuards, resolveGuards, type GuardConfig } from './guards.js';
import { install as installOtelMetrics } from './otel-metrics.js';

/**
 * Where the core meets its consumers. The core (tracker, stream state, response hook, track(), config)
 * knows none of them: each consumer registers itself with the tracker (its `install()`), and the public
 * entry points — instrument(), observeAll(), the adapters, sse() — resolve their options here, which
 * installs them all. test/architecture.test.ts holds the core to that.
 */

/** The settings of one instrument() / adapter / sse() call: the core's, and the consumers' own. */
export interface ResolvedConfig extends StreamConfig {
  /** null when the metrics could not be set up (a faulty registry): the stream is still tracked. */
  readonly metrics: MetricsSet | null;
  /** Opt-in guards (src/guards.ts); null when every guard is off. */
  readonly guards: GuardConfig | null;
}

const tracker = getTracker();

/**
 * Registers the consumers with the tracker once, even across copies of the package. The order is the
 * order of their listeners: metrics first (the others read a stream's route metrics), channels after
 * the detectors, guards after metrics.
 */
export function installConsumers(): void {
  installMetrics();
  installTracing();
  installDetectors();
  installChannels();
  installGuards();
  installOtelMetrics();
}

/** Validates options (a user error throws here, at setup, never per request) and resolves them once. */
export function resolveConfig(options: InstrumentOptions = {}): ResolvedConfig {
  const { maxRoutes, ...core } = resolveCoreConfig(options);
  const guards = resolveGuards(options);
  installConsumers();
  let metrics: MetricsSet | null = null;
  try {
    metrics = getMetricsSet(options.registry, options.prefix ?? '', maxRoutes);
  } catch (err) {
    // A registry that throws must not break the app: stream without metrics, and count it.
    tracker.fault('metrics', err);
  }
  return Object.freeze({ ...core, metrics, guards });
}
