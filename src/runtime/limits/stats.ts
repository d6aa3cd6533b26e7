import { getTracker, type TrackerListener } from '../../core/tracker.js';
import { MinuteWindow } from './window.js';

/**
 * Last-minute tallies for the health probe. They live on a tracker listener, so two copies of the
 * package (ESM and CJS) find and share one set through the one tracker.
 */
export interface RuntimeStats {
  rateLimited: MinuteWindow;
  overloaded: MinuteWindow;
  closed: MinuteWindow;
  clientAborted: MinuteWindow;
}

type StatsListener = TrackerListener & { stats: RuntimeStats };

const COMPONENT = 'runtime-stats';

export function runtimeStats(): RuntimeStats {
  const tracker = getTracker();
  const found = tracker.listeners.find((l) => l.component === COMPONENT) as StatsListener | undefined;
  if (found !== undefined) return found.stats;
  const stats: RuntimeStats = {
    rateLimited: new MinuteWindow(),
    overloaded: new MinuteWindow(),
    closed: new MinuteWindow(),
    clientAborted: new MinuteWindow(),
  };
  const listener: StatsListener = {
    component: COMPONENT,
    stats,
    close(s) {
      const now = Date.now();
      stats.closed.add(1, now);
      if (s.outcome === 'client_aborted') stats.clientAborted.add(1, now);
    },
  };
  tracker.subscribe(listener);
  return stats;
}
