import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InstrumentOptions } from './types.js';
import { resolveConfig } from './setup.js';
import { enterInStream, track } from './core/track.js';
import { kIgnore, kObserver } from './core/symbols.js';
import { getTracker } from './core/tracker.js';
import type { StreamConfig, StreamState } from './core/stream-state.js';
import { hookHttp2, unhookHttp2 } from './core/http2-hook.js';
import { atShutdown } from './core/switch.js';

const CHANNEL = 'http.server.request.start';
const tracker = getTracker();

interface Observer {
  refs: number;
  onStart: (message: unknown) => void;
  /** HTTP/2 servers report through http2-hook.ts with this config. */
  config?: StreamConfig;
}

const g = globalThis as unknown as Record<symbol, Observer | undefined>;

/** Responses that streamscope itself serves (the /metrics port) are not observed. */
export { kIgnore };

function h2Source(): { config: StreamConfig; onTracked: (s: StreamState) => void } | undefined {
  const cfg = g[kObserver]?.config;
  return cfg === undefined ? undefined : { config: cfg, onTracked: enterInStream };
}

/** Undoes what observeAll() installed: its channel subscription and the HTTP/2 server hook. */
function stopObserving(o: Observer): void {
  diagnosticsChannel.unsubscribe(CHANNEL, o.onStart);
  if (g[kObserver] === o) g[kObserver] = undefined;
  unhookHttp2();
}

/** shutdown(): every observeAll() subscription goes, whatever its count of references. */
function shutdownObserver(): void {
  const o = g[kObserver];
  if (o === undefined) return;
  o.refs = 0;
  stopObserving(o);
}
atShutdown(shutdownObserver, 0);

/**
 * Observes every node:http server response in the process through diagnostics_channel, with no
 * code change. Idempotent across calls and copies of the package; returns an unsubscribe, which, for the
 * last reference, undoes what observeAll installed (the channel subscription, the HTTP/2 server hook).
 */
export function observeAll(options: InstrumentOptions = {}): () => void {
  let obs = g[kObserver];
  if (obs === undefined) {
    const config = resolveConfig(options);
    const onStart = (message: unknown): void => {
      try {
        const m = message as { request: IncomingMessage; response: ServerResponse; server?: unknown };
        if (m.server !== undefined && (m.server as Record<symbol, unknown>)[kIgnore] === true) return;
        const s = track(m.request, m.response, config, { specific: false });
        if (s !== undefined && s.config === config) enterInStream(s);
      } catch (err) {
        tracker.fault('observer', err);
      }
    };
    obs = { refs: 0, onStart, config };
    g[kObserver] = obs;
    diagnosticsChannel.subscribe(CHANNEL, onStart);
    hookHttp2(h2Source);
  }
  obs.refs++;
  let done = false;
  const o = obs;
  return () => {
    if (done) return;
    done = true;
    o.refs--;
    if (o.refs === 0 && g[kObserver] === o) stopObserving(o);
  };
}
