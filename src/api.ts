import type { Finding, StreamSnapshot } from './types.js';
import { getTracker } from './core/tracker.js';
import { invalidArg } from './errors.js';

const tracker = getTracker();

/** Snapshot of open streams (and flagged ones whose producer still holds them). */
export function streams(): StreamSnapshot[] {
  return tracker.streams();
}

/** Leak-detector findings as they happen. Returns an unsubscribe. */
export function onFinding(listener: (finding: Finding) => void): () => void {
  if (typeof listener !== 'function') throw invalidArg('onFinding(listener)', 'listener', 'a function');
  return tracker.onFinding(listener);
}

/** The most recent findings, oldest first (a bounded ring of 1,000). */
export function recentFindings(): Finding[] {
  return tracker.recentFindings();
}

/** Faults streamscope swallowed, by component. */
export function internalErrors(): Record<string, number> {
  return Object.fromEntries(tracker.internalErrors);
}
