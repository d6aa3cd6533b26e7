import { kAsyncStream } from '../../core/symbols.js';
import asyncHooks from 'node:async_hooks';
import { AsyncLocalStorage, executionAsyncResource } from 'node:async_hooks';
import { Phase, type StreamState } from '../../core/stream-state.js';
import { getTracker } from '../../core/tracker.js';
import { captureStack, STACK_FRAMES, userFrames, type StackHolder } from '../../core/stacks.js';
import { cpuLabeler } from '../cpu-labels.js';
import { warn } from '../../errors.js';
import { atShutdown } from '../../core/switch.js';

/**
 * `trackAsync`: async resources created while a stream's handler runs are tied to the stream
 * through AsyncLocalStorage, and recorded by an async_hooks `init` hook with the resource itself. What is
 * still alive after the stream closed is `dangling_async`.
 *
 * Cost (docs/detectors.md, bench/core/notes.md): there is no `destroy` hook. Any destroy hook makes Node
 * register a destroy callback for every promise of the process; liveness is read from the resource
 * instead, when it is asked for (`_destroyed` of a Timeout or Immediate, `getAsyncId()` of a handle or
 * request, which Node resets when it destroys one). A creation stack is captured (not formatted) only for
 * what can outlive a stream long enough to be named by a finding: an Immediate runs at the next turn of
 * the loop, so it holds its stream until then but carries no stack and is never named. Timeouts that
 * Node creates unreferenced (its socket and keep-alive timers, `setUnrefTimeout`) are not the handler's
 * and are not recorded; the public timers always create referenced ones.
 * Promises are not tracked (too many, and their end is only seen with GC); where AsyncContextFrame carries the
 * stream, the hook is made with `trackPromises: false` and Node runs no promise hook at all (hookOptions).
 */

const tracker = getTracker();

/**
 * How the stream travels from the handler to what it schedules, by line of Node:
 *
 * - AsyncLocalStorage over async_hooks (Node 20, and Node 24 with `--no-async-context-frame`): its store is a
 *   property of the current async resource that its own `init` hook copies to every new resource, promises included.
 *   Ours does the same with the stream (`kStream`) in the one `init` hook that also records the resources: one hook
 *   call per async resource of the process instead of two (AsyncLocalStorage's and ours), no store lookup per init,
 *   and no closure per handler run. The same semantics as AsyncLocalStorage's `run`/`enterWith`/`getStore`, which is
 *   what this code did before.
 * - AsyncContextFrame (Node 24's default): the store lives in a frame carried by V8 at no cost per resource (no hook of
 *   its own), so AsyncLocalStorage stays the carrier there and our hook only reads it for the resources it records.
 *
 * Told apart by the AsyncLocalStorage implementation itself: the async_hooks one has `_propagate`.
 */
const PROPAGATE = typeof (AsyncLocalStorage.prototype as { _propagate?: unknown })._propagate === 'function';
const kStream = kAsyncStream;
/**
 * What the carrier puts on each resource: the stream in an object of one shape for every stream, not the stream
 * itself. V8 records the shape of what a property holds, and the streams' shape changes once in the process's
 * life (a field of the first stream to close takes a fractional number): the copy's store then missed its cache
 * and stayed megamorphic (`--log-ic`), about 200 instructions per async resource of a stream on Node 20, some
 * 11,000 per stream of bench/core/inproc.mjs.
 */
interface Token {
  readonly s: StreamState;
}
type Carrier = { [kStream]?: Token };
const als = PROPAGATE ? null : new AsyncLocalStorage<StreamState>();

/** An async resource created in a stream's context: its type, and where (formatted only if a finding names it). */
export interface AsyncResourceRecord {
  type: string;
  holder: StackHolder;
}

/**
 * This consumer's slot on each stream: its async resources, flat, four entries each (resource, async id,
 * type, stack holder or null): no object per resource. Dead ones are dropped when the list is read and
 * when it doubles.
 */
const kSlot = tracker.slot('trackAsync');
const STRIDE = 4;
interface Records {
  a: unknown[];
  /** Compact when `a` reaches this length. */
  next: number;
}

/**
 * Types worth reporting: things that keep work going or keep the process alive. A switch, not a Set: the hook asks
 * for every async resource of the process, and the two most frequent types (promises, and the TickObject of each
 * `process.nextTick`) are answered first by comparing the string (Node's type names are constants) with no call.
 */
function tracked(type: string): boolean {
  switch (type) {
    case 'PROMISE':
    case 'TickObject':
      return false;
    case 'Timeout':
    case 'Immediate':
    case 'TCPWRAP':
    case 'TCPCONNECTWRAP':
    case 'HTTPCLIENTREQUEST':
    case 'FSREQCALLBACK':
    case 'FILEHANDLE':
    case 'PIPEWRAP':
    case 'PROCESSWRAP':
    case 'SIGNALWRAP':
    case 'UDPWRAP':
    case 'ZLIB':
    case 'Worker':
      return true;
    default:
      return false;
  }
}

/** Frames kept for a Timeout, captured from below its constructor: setTimeout/setInterval (or timers/promises' two) and the user's (STACK_FRAMES). */
const TIMEOUT_FRAMES = STACK_FRAMES;
/** Other resources are rare, and Node's frames above the user's are more (http.get: ClientRequest, Agent, net). */
const OTHER_FRAMES = 24;

let state: 'off' | 'on' | 'unavailable' = 'off';
let hook: asyncHooks.AsyncHook | null = null;

interface TimerLike {
  _destroyed?: boolean;
  hasRef?: () => boolean;
}
interface WrapLike {
  getAsyncId?: () => number;
  req?: { parser?: WrapLike | null } | null;
}

/** Whether a recorded resource is still alive: read from the resource itself (see the module's comment). */
function alive(r: unknown, id: number, type: string): boolean {
  if (type === 'Timeout' || type === 'Immediate') return (r as TimerLike)._destroyed !== true;
  const w = r as WrapLike;
  // A handle or request wrap: Node sets its async id to -1 when it emits its destroy.
  if (typeof w.getAsyncId === 'function') return w.getAsyncId() === id;
  // HTTPCLIENTREQUEST's resource is a plain object over the request: its response parser is the wrap
  // (freed, and the request's `parser` cleared, when the response ends or the socket closes).
  if (type === 'HTTPCLIENTREQUEST') {
    const p = w.req?.parser;
    return p !== null && p !== undefined && typeof p.getAsyncId === 'function' && p.getAsyncId() === id;
  }
  return true;
}

/**
 * The hook's init on the carrier path (called for every async resource of the process while on, promises
 * included): every new resource takes the current one's stream, as AsyncLocalStorage's own hook does with its
 * store, and those that a finding can name are recorded. Outside a stream, undefined is written only where it can
 * replace a stream: a resource object that Node reuses (an HTTP parser) starts afresh, while a promise or a
 * TickObject is new and has none to lose (and keeps its shape). Promises, the most frequent, have a store of their own,
 * where V8 sees one shape (see Token).
 */
function onInit(asyncId: number, type: string, _trigger: number, resource: object): void {
  let t: Token | undefined;
  try {
    t = (executionAsyncResource() as Carrier)[kStream];
    if (type === 'PROMISE') {
      if (t !== undefined) (resource as Carrier)[kStream] = t;
    } else if (t !== undefined || type !== 'TickObject') (resource as Carrier)[kStream] = t;
  } catch (err) {
    tracker.fault('detectors', err);
    return;
  }
  if (t === undefined || !tracked(type)) return;
  const s = t.s;
  if (tracker.internalDepth > 0 || s.phase === Phase.Discarded || s.phase >= Phase.Closed) return;
  record(s, asyncId, type, resource, onInit);
}

/**
 * The hook's init where AsyncLocalStorage carries the stream (AsyncContextFrame): called for every async resource
 * but promises (hookOptions), it looks the stream up only for a type that a finding can name. Small, so that V8
 * can inline it into Node's callers.
 */
function onInitStore(asyncId: number, type: string, _trigger: number, resource: object): void {
  if (!tracked(type)) return;
  const s = (als as AsyncLocalStorage<StreamState>).getStore();
  if (s === undefined || tracker.internalDepth > 0 || s.phase === Phase.Discarded || s.phase >= Phase.Closed) return;
  record(s, asyncId, type, resource, onInitStore);
}

/** The hook's init (onInit or onInitStore). */
type Init = (asyncId: number, type: string, trigger: number, resource: object) => void;

/**
 * Records a resource that the stream's handler created: with a creation stack captured from below its constructor
 * (a Timeout) or below the hook's init (`init`, by identity, not by file name: bundling renames files), so what
 * remains is Node's frames and the user's; none for an Immediate.
 */
function record(s: StreamState, asyncId: number, type: string, resource: object, init: Init): void {
  try {
    let holder: StackHolder | null = null;
    if (type === 'Timeout') {
      const hasRef = (resource as TimerLike).hasRef;
      if (typeof hasRef === 'function' && !hasRef.call(resource)) return; // Node's own (setUnrefTimeout)
      holder = captureStack(resource.constructor, TIMEOUT_FRAMES);
    } else if (type !== 'Immediate') {
      holder = captureStack(init, OTHER_FRAMES);
    }
    let rec = s.slot<Records>(kSlot);
    if (rec === undefined) {
      rec = { a: [], next: 16 * STRIDE };
      s.setSlot(kSlot, rec);
    }
    const a = rec.a;
    const n = a.length - STRIDE;
    if (n >= 0 && a[n + 2] === 'Immediate' && (a[n] as TimerLike)._destroyed === true) {
      // the last one recorded is an Immediate that ran (a handler that awaits a turn of the loop makes one per
      // turn): its entry is taken over, as the next read of the list would drop it
      a[n] = resource;
      a[n + 1] = asyncId;
      a[n + 2] = type;
      a[n + 3] = holder;
      return;
    }
    a.push(resource, asyncId, type, holder);
    if (a.length >= rec.next) {
      compact(a);
      rec.next = Math.max(16 * STRIDE, 2 * a.length);
    }
  } catch (err) {
    tracker.fault('detectors', err);
  }
}

/** Drops the dead resources of a list, in place. */
function compact(a: unknown[]): void {
  let w = 0;
  for (let i = 0; i < a.length; i += STRIDE) {
    if (!alive(a[i], a[i + 1] as number, a[i + 2] as string)) continue;
    if (w !== i) for (let k = 0; k < STRIDE; k++) a[w + k] = a[i + k];
    w += STRIDE;
  }
  a.length = w;
}

/**
 * The hook's options. On the AsyncLocalStorage path (AsyncContextFrame) the hook needs no promise: it is created with
 * `trackPromises: false`, so that Node does not install V8's promise hooks (an init, before and after call in JS for
 * every promise of the process, most of trackAsync's cost per stream there). Node 24.x and 26.x honour the option
 * (nodejs/node#61415); older lines take no notice of an option they do not know, and their hook sees promises and
 * returns at once, as before, so the option needs no test of support: where it is honoured it saves the promise
 * hooks, where it is not nothing changes. On the carrier path (`als === null`: Node 20 and 22, Node 24 with
 * `--no-async-context-frame`) the promises' init is what carries the stream across awaits: the option is not given.
 */
function hookOptions(): asyncHooks.HookCallbacks {
  if (als === null) return { init: onInit };
  return { init: onInitStore, trackPromises: false } as asyncHooks.HookCallbacks;
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
    hook ??= createHook(hookOptions());
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
 * forgotten (the streams' lists hold the resources themselves).
 */
function disableAsyncTracking(): void {
  if (state !== 'on' || hook === null) return;
  hook.disable();
  state = 'off';
  const forget = (s: StreamState): void => {
    if (s.slot(kSlot) !== undefined) s.setSlot(kSlot, undefined);
  };
  tracker.open.each(forget);
  tracker.lingering.each(forget);
}
atShutdown(disableAsyncTracking, 20);

/** Registers trackAsync's context with the tracker: track()'s inStream/enterInStream run through it (one per process). */
export function installAsyncContext(): void {
  tracker.useAsyncContext({ run: runInStream, wants: wantsContext, enter: enterStream, live: heldAsync });
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

/** Whether runInStream would do more than call `fn` (trackAsync for this stream, or CPU labels). */
function wantsContext(s: StreamState): boolean {
  return cpuLabeler() !== undefined || (s.config.trackAsync && enableAsyncTracking());
}

function runTracked<T>(s: StreamState, fn: (...args: unknown[]) => T, thisArg: unknown, args: ArrayLike<unknown>): T {
  if (!s.config.trackAsync || !enableAsyncTracking()) return fn.apply(thisArg, args as unknown[]);
  if (als !== null) return als.run(s, () => fn.apply(thisArg, args as unknown[]));
  // AsyncLocalStorage's `run` on async_hooks, with the stream: on the current resource while `fn` runs, the
  // resource's own value back after (what `fn` creates meanwhile takes the stream in onInit)
  const r = executionAsyncResource() as Carrier;
  const prev = r[kStream];
  r[kStream] = { s };
  try {
    return fn.apply(thisArg, args as unknown[]);
  } finally {
    r[kStream] = prev;
  }
}

/** For observeAll: the rest of this synchronous dispatch (the request listener) runs in the stream. */
export function enterStream(s: StreamState): void {
  if (s.config.trackAsync && enableAsyncTracking()) {
    // AsyncLocalStorage's `enterWith`: the current resource carries the stream until it is done
    if (als === null) (executionAsyncResource() as Carrier)[kStream] = { s };
    else als.enterWith(s);
  }
  const labeler = cpuLabeler();
  if (labeler !== undefined) labeler.enter(s);
}

/**
 * Live resources of the stream: dead ones dropped, and those that Node's own bookkeeping created in the stream's
 * context (they have no user frame on their creation stack) too: told apart here, when one outlives the stream,
 * not at creation. Those created inside the response's own write/end/writeHead (the Date header cache) are never
 * recorded (tracker.internalDepth). Returns the list, or undefined when nothing is left.
 */
function liveList(s: StreamState): unknown[] | undefined {
  const rec = s.slot<Records>(kSlot);
  if (rec === undefined) return undefined;
  const a = rec.a;
  let w = 0;
  for (let i = 0; i < a.length; i += STRIDE) {
    if (!alive(a[i], a[i + 1] as number, a[i + 2] as string)) continue;
    const holder = a[i + 3] as StackHolder | null;
    if (holder !== null && userFrames(holder) === undefined) continue;
    if (w !== i) for (let k = 0; k < STRIDE; k++) a[w + k] = a[i + k];
    w += STRIDE;
  }
  a.length = w;
  if (w === 0) {
    s.setSlot(kSlot, undefined);
    return undefined;
  }
  return a;
}

/** What holds a closed stream (the tracker's producerHolds): every live resource, an Immediate until it ran included. */
function heldAsync(s: StreamState): number {
  const a = liveList(s);
  return a === undefined ? 0 : a.length / STRIDE;
}

/** Live resources that a `dangling_async` finding names: those with a creation stack (all but Immediates). */
export function liveAsync(s: StreamState): number {
  const a = liveList(s);
  if (a === undefined) return 0;
  let n = 0;
  for (let i = 3; i < a.length; i += STRIDE) if (a[i] !== null) n++;
  return n;
}

/** The stream's live async resources that a finding names (for the `dangling_async` finding's detail). */
export function asyncResourcesOf(s: StreamState): AsyncResourceRecord[] {
  const a = liveList(s);
  const out: AsyncResourceRecord[] = [];
  if (a === undefined) return out;
  for (let i = 0; i < a.length; i += STRIDE) {
    const holder = a[i + 3] as StackHolder | null;
    if (holder !== null) out.push({ type: a[i + 2] as string, holder });
  }
  return out;
}
