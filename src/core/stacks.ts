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

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export function captureStack(above?: Function): StackHolder {
  const holder: StackHolder = {};
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 24; // async_hooks and Node's own frames come first; keep room for the user's
  Error.captureStackTrace(holder, above ?? captureStack);
  Error.stackTraceLimit = limit;
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
