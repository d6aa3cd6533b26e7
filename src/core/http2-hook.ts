/**
 * HTTP/2 entry points: tracking a `stream` event's `ServerHttp2Stream`, and seeing every HTTP/2
 * server's streams with no code change (register / observeAll).
 *
 * Node 20 publishes no diagnostics_channel message for HTTP/2 server streams (`http2.server.stream.*`
 * arrive in later releases), so `observeAll()` wraps `http2.createServer` and `http2.createSecureServer`
 * once per process: each server they create gets an `emit` that sees `'request'` (compatibility API) and
 * `'stream'` (stream API) before the app's listeners. The same wrapping runs on every Node version, so
 * both behave alike. Servers created before `observeAll()` ran are not seen (docs/instrument.md).
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Phase, type StreamConfig, type StreamState } from './stream-state.js';
import { attach, promote } from './response-hook.js';
import { h2StreamOf, isServerStream, requestOf, type H2StreamLike } from './http2.js';
import { getTracker } from './tracker.js';
import { kState } from './symbols.js';
import { kHooked, kIgnore, kOrigEmit, kOrigRespond, kServerHooked } from './symbols.js';

const tracker = getTracker();

const STREAMY_TYPE = /^\s*(text\/event-stream|application\/x-ndjson)/i;

type Tracked = H2StreamLike & { [kState]?: StreamState; [kOrigRespond]?: H2StreamLike['respond'] };

/**
 * Tracks a `ServerHttp2Stream` (HTTP/2 `stream` event). `headers` are the request's (`:method`,
 * `:path` give the method and the fallback route). Returns the state, or undefined when streamscope failed.
 */
export function attachStream(stream: H2StreamLike, headers: IncomingHttpHeaders | undefined, config: StreamConfig, specific: boolean): StreamState | undefined {
  try {
    const t = stream as Tracked;
    const s = attach(requestOf(headers) as unknown as IncomingMessage, stream as unknown as ServerResponse, config, specific);
    if (s !== undefined && t[kOrigRespond] === undefined) {
      t[kOrigRespond] = stream.respond;
      t.respond = patchedRespond;
    }
    return s;
  } catch (err) {
    tracker.fault('tracker', err);
    return undefined;
  }
}

function patchedRespond(this: Tracked, headers?: Record<string, unknown>): void {
  // eslint-disable-next-line prefer-rest-params
  const ret = (this[kOrigRespond] as H2StreamLike['respond']).apply(this, arguments as unknown as Parameters<H2StreamLike['respond']>);
  const s = this[kState];
  if (s !== undefined && s.phase === Phase.Pending) {
    try {
      if (headers !== null && typeof headers === 'object') {
        let ct: unknown;
        for (const k of Object.keys(headers)) if (k.toLowerCase() === 'content-type') ct = headers[k];
        if (typeof ct === 'string' && STREAMY_TYPE.test(ct)) promote(s);
      }
    } catch (err) {
      tracker.fault('tracker', err);
    }
  }
  return ret;
}

// ---- register / observeAll ------------------------------------------------------------------------


type Http2Module = typeof import('node:http2');
type Emit = (event: string | symbol, ...args: unknown[]) => boolean;
type ServerLike = {
  emit: Emit;
  listenerCount(event: string): number;
  [kServerHooked]?: true;
  [kIgnore]?: boolean;
  /** The server's own `emit` before ours, and whether it was an own property (undone by unhookHttp2). */
  [kOrigEmit]?: { emit: Emit; wrapper: Emit; own: boolean };
};

/** The servers this copy hooked, weakly (a closed server is not kept): unhookHttp2 gives them their emit back. */
const hookedServers = new Set<WeakRef<ServerLike>>();

/** What the server hook asks for each new stream: the observer's config, or undefined when none is active. */
export type ConfigSource = () => { config: StreamConfig; onTracked: (s: StreamState) => void } | undefined;

let source: ConfigSource | undefined;

function hookServer(server: ServerLike): void {
  if (server === null || typeof server !== 'object' || server[kServerHooked] === true) return;
  server[kServerHooked] = true;
  const origEmit = server.emit;
  const emit = function streamscopeH2Emit(this: ServerLike, event: string | symbol, a?: unknown, b?: unknown): boolean {
    if (event === 'stream' || event === 'request') seen(this, event, a, b);
    // eslint-disable-next-line prefer-rest-params
    return origEmit.apply(this, arguments as unknown as [string, ...unknown[]]);
  };
  server[kOrigEmit] = { emit: origEmit, wrapper: emit, own: Object.prototype.hasOwnProperty.call(server, 'emit') };
  server.emit = emit;
  for (const r of hookedServers) if (r.deref() === undefined) hookedServers.delete(r);
  hookedServers.add(new WeakRef(server));
}

/** Gives a hooked server its own `emit` back, unless something wrapped ours since (then ours stays, inert). */
function unhookServer(server: ServerLike): void {
  const orig = server[kOrigEmit];
  if (orig === undefined || server.emit !== orig.wrapper) return;
  if (orig.own) server.emit = orig.emit;
  else delete (server as Partial<ServerLike>).emit;
  delete server[kOrigEmit];
  delete server[kServerHooked];
}

function seen(server: ServerLike, event: string, a: unknown, b: unknown): void {
  try {
    const src = source?.();
    if (src === undefined || server[kIgnore] === true) return;
    let s: StreamState | undefined;
    if (event === 'request') {
      // Compatibility API (an HTTP/1.1 request on an allowHTTP1 server is node:http's and seen there).
      if (b === null || typeof b !== 'object' || h2StreamOf(b) === null) return;
      s = attach(a as IncomingMessage, b as ServerResponse, src.config, false);
    } else {
      // With a 'request' listener, Node turns the stream into a request/response pair right after: track that.
      if (server.listenerCount('request') > 0 || !isServerStream(a)) return;
      s = attachStream(a, b as IncomingHttpHeaders, src.config, false);
    }
    if (s !== undefined && s.config === src.config) src.onTracked(s);
  } catch (err) {
    tracker.fault('observer', err);
  }
}

/** node:http2, loaded only when observeAll() runs (an app that only imports streamscope does not pay for it). */
function loadHttp2(): Http2Module {
  const builtin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  if (typeof builtin === 'function') return builtin('node:http2') as Http2Module;
  // Node < 20.16: a require from anywhere resolves a builtin (import.meta is not there in the CJS build).
  return createRequire(`${process.cwd()}/`)('node:http2') as Http2Module;
}

/**
 * Wraps `http2.createServer` and `http2.createSecureServer` once per process (across copies of the
 * package), so that every HTTP/2 server created afterwards reports its streams to `src`.
 */
export function hookHttp2(src: ConfigSource): void {
  source = src;
  try {
    const http2 = loadHttp2() as Http2Module & Record<symbol, unknown>;
    if (http2[kHooked] !== undefined) {
      // Another copy of streamscope wrapped it: it reports through its own source; ours may be newer.
      (http2[kHooked] as { set(src: ConfigSource): void }).set(src);
      return;
    }
    const wrap = <F extends (...a: never[]) => unknown>(orig: F): F => {
      const f = function (this: unknown): unknown {
        // eslint-disable-next-line prefer-rest-params
        const server = orig.apply(this, arguments as unknown as Parameters<F>) as ServerLike;
        try {
          hookServer(server);
        } catch (err) {
          tracker.fault('observer', err);
        }
        return server;
      };
      Object.defineProperty(f, 'name', { value: orig.name });
      Object.defineProperty(f, 'length', { value: orig.length });
      return f as unknown as F;
    };
    const origCreate = http2.createServer;
    const origSecure = http2.createSecureServer;
    const create = wrap(origCreate);
    const secure = wrap(origSecure);
    http2.createServer = create;
    http2.createSecureServer = secure;
    /**
     * Unwrapping checks identity first (as OpenTelemetry's instrumentations do): a function is put back only
     * while the module still holds ours; one that someone wrapped over ours stays, and the hook stays marked
     * (inert: no source) so that a later observeAll() does not wrap twice.
     */
    const unhook = (): void => {
      source = undefined;
      for (const r of hookedServers) {
        const server = r.deref();
        if (server !== undefined) unhookServer(server);
      }
      hookedServers.clear();
      if (http2.createServer !== create || http2.createSecureServer !== secure) return;
      http2.createServer = origCreate;
      http2.createSecureServer = origSecure;
      delete http2[kHooked];
      syncBuiltinESMExports();
    };
    Object.defineProperty(http2, kHooked, { value: { set: (s: ConfigSource) => (source = s), unhook }, enumerable: false, configurable: true });
    // `import { createServer } from 'node:http2'` reads the ESM view of the module: bring it up to date.
    syncBuiltinESMExports();
  } catch (err) {
    tracker.fault('observer', err);
  }
}

/**
 * Undoes hookHttp2 (observeAll's last unsubscribe, shutdown()): `http2.createServer`/`createSecureServer` are the
 * originals again and every server they made meanwhile has its own `emit` back. Through the mark on the module,
 * so whichever copy of the package wrapped them unwraps.
 */
export function unhookHttp2(): void {
  source = undefined;
  try {
    const builtin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
    // Node < 20.16: only a copy that hooked has loaded it, and its own `unhook` is reached through the mark below.
    const http2 = (typeof builtin === 'function' ? builtin('node:http2') : loadHttp2()) as Record<symbol, unknown>;
    const mark = http2[kHooked] as { unhook?: () => void } | undefined;
    if (mark !== undefined && typeof mark.unhook === 'function') mark.unhook();
  } catch (err) {
    tracker.fault('observer', err);
  }
}
