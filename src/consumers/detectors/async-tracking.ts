import asyncHooks from 'node:async_hooks';
import { AsyncLocalStorage } from 'node:async_hooks';
import { Phase, type StreamState } from '../../core/stream-state.js';
import { getTracker } from '../../core/tracker.js';
import { captureStack, userFrames, type StackHolder } from '../../core/stacks.js';
import { cpuLabeler } from '../cpu-labels.js';
import { warn } from '../../errors.js';
import { atShutdown } from '../../core/switch.js';

/**
 * `trackAsync`: async resources created while a stream's handler runs are tied to the stream
 * through AsyncLocalStorage; an async_hooks hook records them at init and forgets them at destroy.
 * What is still recorded after the stream closed is `dangling_async`.
 * Promises are not tracked (too many, and their destroy only comes with GC).
 */

const tracker = getTracker();
const als = new AsyncLocalStorage<StreamState>();

/** An async resource created in a stream's context: its type, and where (formatted only if it outlives the stream). */
export interface AsyncResourceRecord {
  type: string;
  holder: StackHolder;
}

/** This consumer's slot on each stream: its live async resources by async id (a Map, once the first is created). */
const kSlot = tracker.slot('trackAsync');

/** Types worth reporting: things that keep work going or keep the process alive. */
const TRACKED = new Set([
  'Timeout',
  'Immediate',
  'TCPWRAP',
  'TCPCONNECTWRAP',
  'HTTPCLIENTREQUEST',
  'FSREQCALLBACK',
  'FILEHANDLE',
  'PIPEWRAP',
  'PROCESSWRAP',
  'SIGNALWRAP',
  'UDPWRAP',
  'ZLIB',
  'Worker',
]);

const owner = new Map<number, StreamState>();
let state: 'off' | 'on' | 'unavailable' = 'off';
let hook: asyncHooks.AsyncHook | null = null;

/**
 * The hook's init. Its creation stack is captured from below this very function (by identity, not
 * by file name: bundling renames files), so what remains is Node's frames and the user's.
 */
function onInit(asyncId: number, type: string): void {
  if (!TRACKED.has(type) || tracker.internalDepth > 0) return;
  const s = als.getStore();
  if (s === undefined || s.phase === Phase.Discarded || s.phase >= Phase.Closed) return;
  try {
    let map = s.slot<Map<number, AsyncResourceRecord>>(kSlot);
    if (map === undefined) {
      map = new Map();
      s.setSlot(kSlot, map);
    }
    // Formatted (and Node's own resources told apart) only if it outlives the stream.
    map.set(asyncId, { type, holder: captureStack(onInit) });
    owner.set(asyncId, s);
  } catch (err) {
    tracker.fault('detectors', err);
  }
}

function onDestroy(asyncId: number): void {
  const s = owner.get(asyncId);
  if (s === undefined) return;
  owner.delete(asyncId);
  s.slot<Map<number, AsyncResourceRecord>>(kSlot)?.delete(asyncId);
}

/** Turns the hook on (once). Returns false where async_hooks.createHook does not exist. */
export function enableAsyncTracking(): boolean {
  if (state === 'on') return true;
  if (state === 'unavailable') return false;
  const createHook = (asyncHooks as { createHook?: typeof asyncHooks.createHook }).createHook;
  if (typeof createHook !== 'function') {
    state = 'unavailable';
    warn('STREAMSCOPE_TRACK_ASYNC_UNAVAILABLE');
    return false;
  }
  try {
    hook ??= createHook({ init: onInit, destroy: onDestroy });
    hook.enable();
    state = 'on';
    return true;
  } catch (err) {
    tracker.fault('detectors', err);
    state = 'unavailable';
    return false;
  }
}


/**
 * shutdown(): the hook is disabled (a later trackAsync stream enables it again), and what it recorded is
 * forgotten: with no destroy seen from now on, a stream still open would otherwise count its resources alive forever.
 */
function disableAsyncTracking(): void {
  if (state !== 'on' || hook === null) return;
  hook.disable();
  state = 'off';
  for (const s of new Set(owner.values())) s.setSlot(kSlot, undefined);
  owner.clear();
}
atShutdown(disableAsyncTracking, 20);

/** Registers trackAsync's context with the tracker: track()'s inStream/enterInStream run through it (one per process). */
export function installAsyncContext(): void {
  tracker.useAsyncContext({ run: runInStream, enter: enterStream, live: liveAsync });
}

/**
 * Runs `fn` with the stream as the async context (only when the stream's config asks for it), labeled with the
 * stream's route for the CPU profiler when it runs (src/consumers/cpu-labels.ts).
 */
export function runInStream<T>(s: StreamState, fn: (...args: unknown[]) => T, thisArg: unknown, args: ArrayLike<unknown>): T {
  const labeler = cpuLabeler();
  if (labeler !== undefined) return labeler.run(s, runTracked as (...a: unknown[]) => T, undefined, [s, fn, thisArg, args]);
  return runTracked(s, fn, thisArg, args);
}

function runTracked<T>(s: StreamState, fn: (...args: unknown[]) => T, thisArg: unknown, args: ArrayLike<unknown>): T {
  if (!s.config.trackAsync || !enableAsyncTracking()) return fn.apply(thisArg, args as unknown[]);
  return als.run(s, () => fn.apply(thisArg, args as unknown[]));
}

/** For observeAll: the rest of this synchronous dispatch (the request listener) runs in the stream. */
export function enterStream(s: StreamState): void {
  if (s.config.trackAsync && enableAsyncTracking()) als.enterWith(s);
  const labeler = cpuLabeler();
  if (labeler !== undefined) labeler.enter(s);
}

/**
 * Async resources created by the stream's user code and still alive. Resources that Node's own bookkeeping
 * created in the stream's context (a keep-alive socket's timer, set when a response finishes) have no user frame
 * on their creation stack: they are dropped here, when it matters, not at creation. Those created inside the
 * response's own write/end/writeHead (the Date header cache) are never recorded (tracker.internalDepth).
 */
export function liveAsync(s: StreamState): number {
  const map = s.slot<Map<number, AsyncResourceRecord>>(kSlot);
  if (map === undefined) return 0;
  for (const [id, r] of map) if (userFrames(r.holder) === undefined) map.delete(id);
  return map.size;
}

/** The stream's live async resources (for the `dangling_async` finding's detail). */
export function asyncResourcesOf(s: StreamState): Iterable<AsyncResourceRecord> {
  return s.slot<Map<number, AsyncResourceRecord>>(kSlot)?.values() ?? [];
}
