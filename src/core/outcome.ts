import { Phase, type StreamState } from './stream-state.js';

/**
 * How a stream ended: every flag its outcome is made from (`errored`, `timedOut`, `serverDestroyed`,
 * `clientClosed`) and the outcome itself are set here and nowhere else (test/architecture.test.ts holds it).
 * The response hook and the HTTP/2 code report what they see; entry points and consumers report through the
 * tracker's methods (`markError`, `markTimeout`, `serverCut`), which call these.
 *
 * The rule at close (`closeOutcome`): a timeout is `timeout`; a failure the server reported while the client was
 * there is `error`; a response that finished is `completed`; one the server cut is `error`; anything else the
 * peer cut: `client_aborted`.
 */

/** The server side failed (handler threw, response errored, a guard cut it) while the client was there. */
export function markError(s: StreamState): void {
  if (!s.clientClosed && s.phase < Phase.Closed) s.errored = true;
}

/** The stream's own deadline passed (sse's `timeoutMs`, a drain timeout), before it closed. */
export function markTimeout(s: StreamState): void {
  if (s.phase < Phase.Closed) s.timedOut = true;
}

/** The socket or the HTTP/2 stream timed out while the stream was open. */
export function socketTimedOut(s: StreamState): void {
  if (s.phase === Phase.Open) s.timedOut = true;
}

/**
 * The server cut an open stream (destroyed its response, socket or HTTP/2 stream; `err`: with an error, or a
 * guard's dead-peer cut): outcome `error` at close, not `client_aborted`. The caller has told it from a peer's reset.
 */
export function serverCut(s: StreamState, err: boolean): void {
  if (s.phase !== Phase.Open || s.clientClosed) return;
  s.serverDestroyed = true;
  if (err) s.errored = true;
}

/**
 * The response closed (`s.phase` is Closed): decides the outcome. `finished`: the response (or HTTP/2 stream)
 * ended the way the server meant it to; `resErrored`: the response carries an error the server side set (a
 * failed pipe into it). Returns true when the connection went before the end: the client is gone from now
 * on (later writes are writes after close), and the hook announces `clientClosed`.
 */
export function closeOutcome(s: StreamState, finished: boolean, resErrored: boolean): boolean {
  if (resErrored && !s.clientClosed) s.errored = true;
  if (s.timedOut) s.outcome = 'timeout';
  else if (s.errored) s.outcome = 'error';
  else if (finished) s.outcome = 'completed';
  else if (s.serverDestroyed) s.outcome = 'error';
  else s.outcome = 'client_aborted';
  if (finished) return false;
  s.clientClosed = true;
  return true;
}
