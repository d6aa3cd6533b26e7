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
 * Frames kept by default: the user frames a finding shows (at most 10, `userFrames`) and a few of Node's (a
 * writeHead reached through `end()`). Each frame costs, so callers that know how deep Node's own part is pass less.
 */
export const STACK_FRAMES = 12;

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
