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
 * frame that calls in and the callers that give it context, with room for a few of Node's (a writeHead reached
 * through `end()`). Each frame costs (about 0.5 µs per frame at writeHead in bench/core/inproc.mjs, where 12
 * cost +9 µs per stream and 3 cost +4.6 µs): 8 is the compromise; `userFrames` shows at most 10.
 */
export const STACK_FRAMES = 8;

/**
 * Captures the stack below `above` (by identity), keeping `limit` frames. V8 only records the frames here (about
 * 2 µs for the first frame and 0.2 µs for each further one, Node 20 on the bench machine); the string is built when
 * `stack` is first read, which only a finding does (`userFrames`). Never read `.stack` on a hot path.
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
