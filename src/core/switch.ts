/**
 * The off switch (`shutdown()`, src/shutdown.ts). Two parts, shared by every copy of the package (ESM and CJS)
 * through one object on `globalThis`:
 *
 * - which settings are live: a config resolved by an entry point (instrument(), the adapters, observeAll(),
 *   sse()) is live until the next shutdown; `track()` tracks nothing for a config that is not, so a handler
 *   wrapped before a shutdown passes its responses through untouched, and one set up after it tracks again;
 * - what undoes each thing streamscope installed in the process (a patched module function, a channel
 *   subscription, a timer, the agent): each module that installs something registers its undo here once,
 *   and `shutdown()` runs them all, in `order`.
 *
 * Responses tracked before a shutdown are not cut loose: they keep their per-response state until they close
 * (docs/instrument.md, "Turning it off").
 */
import { kSwitch } from './symbols.js';

export type Undo = () => void | Promise<unknown>;

interface Switch {
  live: WeakSet<object>;
  undo: Map<Undo, number>;
}

const g = globalThis as unknown as Record<symbol, Switch | undefined>;
const sw: Switch = (g[kSwitch] ??= { live: new WeakSet(), undo: new Map() });

/** An entry point resolved this config: streams under it are tracked until the next shutdown. */
export function markLive(config: object): void {
  sw.live.add(config);
}

/** Was this config resolved since the last shutdown? */
export function isLive(config: object): boolean {
  return sw.live.has(config);
}

/**
 * Registers what undoes something this module installs (once per function; call it at module load).
 * Lower `order` runs first: entry points (0) before the core's patches (10) before timers (20) and the agent (30).
 */
export function atShutdown(fn: Undo, order: number): void {
  if (!sw.undo.has(fn)) sw.undo.set(fn, order);
}

/**
 * Every config so far stops being live, then every registered undo runs (each in a try: one that throws is
 * reported to `fault` and the rest still run). Resolves when the asynchronous ones (the agent's socket, an
 * OpenTelemetry SDK's flush) are done; never rejects.
 */
export function runShutdown(fault: (err: unknown) => void): Promise<void> {
  sw.live = new WeakSet();
  const pending: Promise<unknown>[] = [];
  for (const [fn] of [...sw.undo].sort((a, b) => a[1] - b[1])) {
    try {
      const r = fn();
      if (r !== undefined) pending.push(Promise.resolve(r).catch(fault));
    } catch (err) {
      fault(err);
    }
  }
  return Promise.all(pending).then(() => undefined);
}
