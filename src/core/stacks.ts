/**
 * Stack traces, captured cheaply and formatted late: V8 records the frames at capture and formats the
 * string only when `stack` is first read, so a trace that is never reported costs little.
 */
export interface StackHolder {
  stack?: string;
  /** The user frames, once formatted; null when there were none. */
  user?: string | null;
}

/**
 * Frames of Node itself are not the user's. streamscope's own frames never need a name test: stacks
 * are captured from below our own functions (Error.captureStackTrace's constructorOpt, by identity),
 * and resources created inside our own calls are not recorded at all (tracker.internalDepth).
 */
const INTERNAL_FRAME = /\(node:|at node:/;

/**
 * Frames kept by default (captureStacks at writeHead/first write; a Timeout from below its constructor): the
 * frame that calls in and the callers that give it context, with room for two of Node's above the user's (a
 * writeHead reached through `flushHeaders()` or `end()`). What a capture costs is V8 decoding each optimized
 * physical frame it walks (`OptimizedFrame::Summarize` builds a `TranslatedState` from the frame's
 * deoptimization data, frames above `above` included): about 0.4 µs for a small frame, 3 µs for one with eight
 * functions inlined into it, and 0.2 µs for each further frame inlined into one already decoded (Node 20 and 24
 * alike, `node bench/core/stack-cost.mjs`). Fewer frames kept is fewer frames walked: below the user's frames
 * are the dispatch's (a framework's router, then Node's `emit`/`parserOnIncoming`, never shown), and
 * streamscope's own wrapper, the only frame of ours (`instrument()` calls the handler itself when it needs no
 * async context). Each kept frame also holds 64 B (a CallSiteInfo) until the stream is released.
 */
export const STACK_FRAMES = 5;

/**
 * Captures the stack below `above` (by identity), keeping `limit` frames. V8 only records the frames here; the
 * string is built when `stack` is first read, which only a finding does (`userFrames`). Never read `.stack` on a
 * hot path. The holder's shape and toggling `Error.stackTraceLimit` around the call cost nothing measurable (an
 * object literal, a class instance, `Object.create(null)`, the limit left set: within 0.2 µs of each other).
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export function captureStack(above?: Function, limit = STACK_FRAMES): StackHolder {
  const holder: StackHolder = {};
  const saved = Error.stackTraceLimit;
  Error.stackTraceLimit = limit;
  Error.captureStackTrace(holder, above ?? captureStack);
  Error.stackTraceLimit = saved;
  return holder;
}

/** The user frames of a captured stack (at most 10), or undefined when there are none. */
export function userFrames(holder: StackHolder): string | undefined {
  if (holder.user === undefined) {
    const kept = (holder.stack ?? '')
      .split('\n')
      .slice(1)
      .filter((l) => l !== '' && !INTERNAL_FRAME.test(l));
    holder.user = kept.length === 0 ? null : kept.slice(0, 10).join('\n');
  }
  return holder.user ?? undefined;
}
