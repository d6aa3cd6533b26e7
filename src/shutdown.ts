import { runShutdown } from './core/switch.js';
import { getTracker } from './core/tracker.js';
// Each module that installs something registers its undo when it loads (src/core/switch.ts); these imports make
// sure every one of them is loaded wherever shutdown() is, so that it can be undone whichever entry installed it.
import './observe.js';
import './core/response-hook.js';
import './consumers/detectors/index.js';
import './consumers/agent/index.js';

const tracker = getTracker();

/**
 * The off switch (docs/instrument.md, "Turning it off"): restores every method streamscope patched (node:http2's
 * `createServer`/`createSecureServer` and each server's `emit`, the `destroy` of sockets it watched), unsubscribes
 * every channel, stops its timers, its async hooks and the agent (its socket file removed), and, under
 * `streamscope/register`, closes the /metrics port and flushes and shuts down the OpenTelemetry SDK it started.
 * Handlers wrapped before it pass their responses through untracked; an entry point set up after it
 * (`instrument()`, an adapter, `observeAll()`, `sse()` with new options) tracks again, into the same metrics.
 *
 * Responses already in flight are not touched: each stream open at the call keeps being tracked until it closes,
 * so that its outcome, duration and span are recorded as usual (no finding is raised after the call).
 *
 * Idempotent, and safe before anything was tracked. What it stops at once, it stops before it returns; the
 * promise resolves when the asynchronous parts are done (the agent's socket closed, the SDK flushed). Never rejects.
 */
export function shutdown(): Promise<void> {
  // counted as the core's own (a known component: its series starts at 0)
  return runShutdown((err) => tracker.fault('tracker', err));
}
