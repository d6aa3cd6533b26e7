import type { Registry } from 'prom-client';
import type { InstrumentOptions } from './types.js';
import type { StreamConfig } from './core/stream-state.js';
import { resolveCoreConfig } from './core/config.js';
import { getTracker } from './core/tracker.js';
import { markLive } from './core/switch.js';
import { getMetricsSet, install as installMetrics, type MetricsSet } from './consumers/metrics.js';
import { install as installTracing } from './consumers/tracing.js';
import { install as installDetectors } from './consumers/detectors/index.js';
import { install as installChannels } from './consumers/channels.js';
import { install as installGuards, resolveGuards, type GuardConfig } from './consumers/guards.js';
import { install as installOtelMetrics } from './consumers/otel-metrics.js';

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
  /** Opt-in guards (src/consumers/guards.ts); null when every guard is off. */
  readonly guards: GuardConfig | null;
}

const tracker = getTracker();

/**
 * Registers the consumers with the tracker once, even across copies of the package. The order is the
 * order of their listeners: metrics first (the others read a stream's route metrics), channels after
 * the detectors, guards after metrics. The guards only with the first config that sets one (`guarded`):
 * every stream of a process without guards would call their `open` to hear that it has none.
 */
export function installConsumers(guarded = false): void {
  installMetrics();
  installTracing();
  installDetectors();
  installChannels();
  installOtelMetrics();
  if (guarded) installGuards();
}

/** Validates options (a user error throws here, at setup, never per request) and resolves them once. */
export function resolveConfig(options: InstrumentOptions = {}): ResolvedConfig {
  const { maxRoutes, ...core } = resolveCoreConfig(options);
  const guards = resolveGuards(options);
  installConsumers(guards !== null);
  let metrics: MetricsSet | null = null;
  try {
    metrics = getMetricsSet(options.registry as Registry | undefined, options.prefix ?? '', maxRoutes);
  } catch (err) {
    // A registry that throws must not break the app: stream without metrics, and count it.
    tracker.fault('metrics', err);
  }
  const config: ResolvedConfig = Object.freeze({ ...core, metrics, guards });
  markLive(config);
  return config;
}
