import { performance } from 'node:perf_hooks';
import type { ServerResponse } from 'node:http';
import { Phase, type StreamState } from './stream-state.js';
import { getTracker } from './tracker.js';
import { kAbove, kState } from './symbols.js';

/**
 * Layers between the handler and streamscope's `write` (docs/detectors.md, `buffered_stream`). Two shapes
 * put bytes where streamscope's own write hook cannot see the handler's writes:
 *
 * - a middleware that replaced `res.write` on the instance after streamscope attached (Express's
 *   `compression` under `app.use(streamscope())` or `observeAll()`): its `write` feeds a zlib stream whose
 *   output comes back to streamscope's write later;
 * - a body stream piped into the response (Fastify's `reply.send(stream)`, which `@fastify/compress` pipes
 *   through a zlib stream first).
 *
 * For those responses only, the writes the handler gave are counted above the layer, in an `Above` on the
 * response (`aboveOf(res)`): one counting function per write, or one `data` listener per chunk of a piped
 * body. The default path (no such layer) pays nothing, not even a field. The handler's first write there is the stream's first write (time to
 * first token), as it is when streamscope sits above the layer.
 */

/** A layer above streamscope's write hook, and the writes the handler gave it. */
export class Above {
  given = 0;
  /** The foreign `res.write` (null: a piped body stream). */
  readonly write: ServerResponse['write'] | null;
  constructor(write: ServerResponse['write'] | null) {
    this.write = write;
  }
}

type Res = ServerResponse & { [kState]?: StreamState; [kAbove]?: Above };

/** The layer above a response's write hook, if any. */
export function aboveOf(res: ServerResponse | null): Above | undefined {
  return res === null ? undefined : (res as Res)[kAbove];
}

const tracker = getTracker();

/** The handler's first write through a layer above streamscope's hook: the stream's first write. */
function firstGiven(s: StreamState): void {
  if (s.firstWriteAt >= 0) return;
  s.firstWriteAt = performance.now();
  if (s.phase === Phase.Open) tracker.emit('firstWrite', s);
}

/** `res.write` over a foreign wrapper: counts the write, then calls the wrapper. */
function outerWrite(this: Res): boolean {
  const s = this[kState];
  const a = this[kAbove];
  const above = a?.write;
  // eslint-disable-next-line prefer-rest-params
  const args = arguments as unknown as Parameters<ServerResponse['write']>;
  if (s === undefined || a === undefined || above == null) return Object.getPrototypeOf(this).write.apply(this, args);
  if (!s.clientClosed && s.phase < Phase.Closed) {
    a.given++;
    if (!s.written && s.phase === Phase.Open) tracker.wrote(s);
    if (s.firstWriteAt < 0) {
      try {
        firstGiven(s);
      } catch (err) {
        tracker.fault('tracker', err);
      }
    }
  }
  return above.apply(this, args);
}

/**
 * At promotion: when `res.write` is no longer streamscope's own (`own`), a layer sits above it; count the
 * writes given to that layer from now on.
 */
export function wrapAbove(s: StreamState, res: ServerResponse, own: unknown): void {
  const current = res.write;
  if (current === own || current === (outerWrite as unknown) || typeof current !== 'function') return;
  if ((res as Res)[kAbove] !== undefined) return;
  (res as Res)[kAbove] = new Above(current);
  res.write = outerWrite as ServerResponse['write'];
}

interface BodyStream {
  on(event: string, fn: (...a: unknown[]) => void): unknown;
  once(event: string, fn: (...a: unknown[]) => void): unknown;
  readableFlowing?: boolean | null;
}

/**
 * A body stream that will be piped into the response (Fastify's stream payloads): its chunks are the writes
 * the handler gave. The `data` listener is added once the stream flows (its `resume` event, or at once when
 * it already flows), so streamscope never starts the flow itself nor takes a chunk from the pipe.
 */
export function watchBody(s: StreamState, body: unknown): void {
  const b = body as BodyStream;
  if (b === null || typeof b !== 'object' || typeof b.on !== 'function' || typeof b.once !== 'function') return;
  const res = s.res as Res | null;
  if (res === null || res[kAbove] !== undefined) return; // watched already
  const a = new Above(null);
  res[kAbove] = a;
  const onData = (): void => {
    if (s.clientClosed || s.phase >= Phase.Closed) return;
    a.given++;
    if (!s.written && s.phase === Phase.Open) tracker.wrote(s);
    if (s.firstWriteAt < 0) firstGiven(s);
  };
  if (b.readableFlowing === true) b.on('data', onData);
  else b.once('resume', () => b.on('data', onData));
}
