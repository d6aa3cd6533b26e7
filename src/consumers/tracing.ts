import { performance } from 'node:perf_hooks';
import { ProxyTracerProvider, SpanStatusCode, context, trace, type Attributes, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import type { StreamState } from '../core/stream-state.js';
import { getTracker, type TrackerListener } from '../core/tracker.js';

/** One span per stream, `stream <route>`, child of the span active where the handler ran. */

/** A stream's span and its bookkeeping, in this consumer's slot on the stream (allocated when a span starts). */
class SpanRecord {
  span: Span | undefined;
  readonly context: SpanContext;
  ended = false;
  /** Span events recorded / left out over the cap, and whether the current blocked episode's event was recorded. */
  events = 0;
  dropped = 0;
  episodeRecorded = false;
  constructor(span: Span) {
    this.span = span;
    this.context = span.spanContext();
  }
}

const kSlot = getTracker().slot('tracing');

const recordOf = (s: StreamState): SpanRecord | undefined => s.slot<SpanRecord>(kSlot);

/** The stream's span while it has not ended (guards set an attribute on it). */
export function liveSpan(s: StreamState): Span | undefined {
  const r = recordOf(s);
  return r === undefined || r.ended ? undefined : r.span;
}

let defaultTracer: Tracer | undefined;

export function globalTracer(): Tracer {
  // The API's global tracer is a proxy: a provider registered later is still picked up.
  if (defaultTracer === undefined) defaultTracer = trace.getTracer('streamscope', '0.1.0');
  return defaultTracer;
}

/** The global provider's delegate last looked at, and whether it was the no-op one (tracerFor). */
let lastDelegate: unknown;
let lastIsNoop = true;

/**
 * The tracer for a stream: the one given in the options, else the global one once a tracer provider
 * is registered. Without a provider the API would hand out non-recording spans: skip them entirely.
 */
function tracerFor(configured: Tracer | undefined): Tracer | undefined {
  if (configured !== undefined) return configured;
  const p = trace.getTracerProvider();
  if (p instanceof ProxyTracerProvider) {
    // the delegate changes only when a provider is registered: its class name is read once per delegate
    const d = p.getDelegate();
    if (d !== lastDelegate) {
      lastDelegate = d;
      lastIsNoop = d.constructor.name === 'NoopTracerProvider';
    }
    if (lastIsNoop) return undefined;
  }
  return globalTracer();
}


/**
 * Events kept per stream span. The SDK keeps 128 by default and drops the OLDEST beyond it (the first
 * write, the first backpressure episodes); streamscope stops adding before that and counts the rest in
 * `stream.events_dropped`. Backpressure episodes (a `stream.write_blocked` + `stream.drain` pair) use at
 * most MAX_SPAN_EVENTS - RESERVED_EVENTS; the rest is kept for the one-off events (client close, findings).
 */
export const MAX_SPAN_EVENTS = 100;
const RESERVED_EVENTS = 10;

/** Adds an event within the cap, else counts it as dropped. `room`: events this one needs (2 for an episode). */
function addEvent(r: SpanRecord | undefined, name: string, attrs?: Attributes, time?: number, limit = MAX_SPAN_EVENTS, room = 1): boolean {
  const span = r?.span;
  if (r === undefined || span === undefined) return false;
  if (r.events + room > limit) {
    r.dropped++;
    return false;
  }
  r.events++;
  span.addEvent(name, attrs, time);
  return true;
}

export const tracingListener: TrackerListener = {
  component: 'tracing',
  open(s) {
    const tracer = tracerFor(s.config.tracer);
    // no tracer: this stream has no span, and its later events nothing to add to
    if (tracer === undefined) return false;
    const parent = s.parentContext ?? context.active();
    const span = tracer.startSpan(
      `stream ${s.route}`,
      { startTime: s.startedAt, attributes: { 'stream.route': s.route, 'http.request.method': s.method } },
      parent,
    );
    const r = new SpanRecord(span);
    s.setSlot(kSlot, r);
    const sc = r.context;
    getTracker().setTraceId(s, span.isRecording() || trace.isSpanContextValid(sc) ? sc.traceId : '');
  },
  firstWrite(s) {
    const r = recordOf(s);
    const span = r?.span;
    if (span === undefined) return;
    // as an attribute at once too: it survives whatever happens to the events
    span.setAttribute('stream.first_write_ms', s.firstWriteAt - s.t0);
    addEvent(r, 'stream.first_write', undefined, performance.timeOrigin + s.firstWriteAt);
  },
  writeBlocked(s) {
    const r = recordOf(s);
    if (r?.span === undefined) return;
    // an episode is recorded whole (room for its drain) or not at all
    r.episodeRecorded = addEvent(
      r,
      'stream.write_blocked',
      { 'stream.buffered_bytes': s.res?.writableLength ?? 0 },
      undefined,
      MAX_SPAN_EVENTS - RESERVED_EVENTS,
      2,
    );
  },
  drain(s, waitedMs) {
    const r = recordOf(s);
    if (r?.span === undefined) return;
    if (!r.episodeRecorded) {
      r.dropped++;
      return;
    }
    r.episodeRecorded = false;
    r.events++;
    r.span.addEvent('stream.drain', { 'stream.blocked_ms': Math.round(waitedMs) });
  },
  clientClosed(s) {
    addEvent(recordOf(s), 'stream.client_closed');
  },
  finding(s, f) {
    const attrs = { 'finding.kind': f.kind, 'finding.severity': f.severity, 'finding.detail': f.detail };
    const r = recordOf(s);
    if (r === undefined) return;
    if (r.span !== undefined && !r.ended) {
      addEvent(r, 'stream.finding', attrs);
      return;
    }
    // The stream's span already ended (a producer that went on after its handler returned): record the
    // finding on a short span linked to it, in the same trace.
    const link = r.context;
    const tracer = tracerFor(s.config.tracer);
    if (tracer === undefined) return;
    const span = tracer.startSpan(`stream.finding ${s.route}`, { links: [{ context: link }], attributes: { 'stream.route': s.route } }, trace.setSpanContext(context.active(), link));
    span.addEvent('stream.finding', attrs);
    span.end();
  },
  close(s) {
    const r = recordOf(s);
    const span = r?.span;
    if (r === undefined || span === undefined) return;
    span.setAttributes({
      'stream.outcome': s.outcome as string,
      'stream.bytes': s.bytes,
      'stream.writes': s.writes,
      'stream.blocked_writes': s.blockedWrites,
      'stream.events_dropped': r.dropped,
    });
    if (s.firstWriteAt >= 0) span.setAttribute('stream.first_write_ms', s.firstWriteAt - s.t0);
    if (s.outcome === 'error' || s.outcome === 'timeout') span.setStatus({ code: SpanStatusCode.ERROR, message: s.outcome });
    // A producer that still holds the stream may yet earn a finding: end the span when it lets go.
    if (getTracker().producerHolds(s)) return;
    r.ended = true;
    span.end(performance.timeOrigin + s.closedAt);
  },
  release(s) {
    const r = recordOf(s);
    const span = r?.span;
    if (r === undefined || span === undefined) return;
    // the tracker forgets the stream: so does this record (its context stays, to link later findings)
    r.span = undefined;
    if (r.ended) return;
    r.ended = true;
    span.setAttribute('stream.events_dropped', r.dropped);
    span.end();
  },
};

/** Registers tracing with the tracker (once per process). */
export function install(): void {
  getTracker().register(tracingListener);
}
