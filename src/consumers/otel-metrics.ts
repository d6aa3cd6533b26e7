import { metrics as otelMetrics, type Attributes, type Counter, type Histogram, type Meter } from '@opentelemetry/api';
import { ByMethodOutcome } from './by-method-outcome.js';
import { BLOCKED_BUCKETS, DURATION_BUCKETS, FIRST_WRITE_BUCKETS, routeMetricsOf } from './metrics.js';
import { Phase, type StreamState } from '../core/stream-state.js';
import { getTracker, type TrackerListener } from '../core/tracker.js';

/**
 * The contract metrics as OpenTelemetry instruments, when the application registered a MeterProvider
 * (`metrics.setGlobalMeterProvider()`, or the Node SDK with a metric reader): same names and units as the
 * Prometheus ones, exported by whatever exporter the app configured. Off — one provider check per stream
 * open, nothing else — until a provider is registered. Nothing here runs on the per-write path: bytes and
 * writes are read from the tracker's tallies when the SDK collects (observable counters); streams started and
 * open are per-route numbers here, observed at collection too (the SDK hashes the attributes on every call, the
 * cost of this consumer); only the histograms are recorded per stream (first write, close) and per blocked episode.
 */

const tracker = getTracker();

/**
 * This consumer's slot on each stream: undefined when the stream is not counted in the instruments
 * (opened with no MeterProvider registered); while it is open, its route's totals (no lookup at its first write,
 * blocked episodes and close); once closed, the writes after close already in the route totals (a number).
 */
const kSlot = tracker.slot('otel-metrics');

interface Instruments {
  duration: Histogram;
  firstWrite: Histogram;
  blockedSeconds: Histogram;
  leaks: Counter;
}

/**
 * Per route: totals of closed streams (open ones are added at collection time), streams open now, and streams
 * started by method (observed at collection: no SDK call per stream for them).
 */
class RouteTotals {
  bytes = 0;
  writes = 0;
  blocked = 0;
  afterClose = 0;
  active = 0;
  readonly started = new Map<string, number>();
  /**
   * The attributes of the route's records, made once (a new object per record is an allocation per stream; the
   * SDK reads them, never keeps more than the first of a set): `{ route }`, and `{ route, method, outcome }` by
   * method and outcome, the last one asked for first.
   */
  readonly attrs: Attributes;
  private readonly durationAttrs = new ByMethodOutcome<Attributes>((method, outcome) => Object.freeze({ route: this.route, method, outcome }));
  constructor(readonly route: string) {
    this.attrs = Object.freeze({ route });
  }

  durationOf(method: string, outcome: string): Attributes {
    return this.durationAttrs.get(method, outcome);
  }
}

let instruments: Instruments | null = null;
const byRoute = new Map<string, RouteTotals>();

let lastProvider: unknown = null;
let lastIsNoop = true;

/** True while no meter provider is registered; the provider's class is looked at once per provider (this runs at every open). */
function isNoop(): boolean {
  const p = otelMetrics.getMeterProvider();
  if (p !== lastProvider) {
    lastProvider = p;
    lastIsNoop = p === undefined || p === null || p.constructor?.name === 'NoopMeterProvider';
  }
  return lastIsNoop;
}

function routeOf(s: StreamState): string {
  return routeMetricsOf(s)?.route ?? s.route;
}

function totals(route: string): RouteTotals {
  let t = byRoute.get(route);
  if (t === undefined) {
    t = new RouteTotals(route);
    byRoute.set(route, t);
  }
  return t;
}

/** An open stream's route totals (undefined: not counted, or closed already). */
function openTotals(s: StreamState): RouteTotals | undefined {
  const t = s.slot<number | RouteTotals>(kSlot);
  return typeof t === 'object' ? t : undefined;
}

function setUp(meter: Meter): Instruments {
  const ins: Instruments = {
    duration: meter.createHistogram('stream_duration_seconds', {
      description: 'Streaming response duration, open to close, by outcome.',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    }),
    firstWrite: meter.createHistogram('stream_first_write_seconds', {
      description: 'Open to first body byte (time to first token).',
      unit: 's',
      advice: { explicitBucketBoundaries: FIRST_WRITE_BUCKETS },
    }),
    blockedSeconds: meter.createHistogram('stream_write_blocked_seconds', {
      description: 'Time a blocked write waited for drain (or close).',
      unit: 's',
      advice: { explicitBucketBoundaries: BLOCKED_BUCKETS },
    }),
    leaks: meter.createCounter('stream_leaks_total', { description: 'Leak-detector findings by kind.' }),
  };
  const started = meter.createObservableCounter('stream_started_total', { description: 'Streams opened.' });
  const active = meter.createObservableUpDownCounter('stream_active_connections', { description: 'Streams open now.' });
  const bytes = meter.createObservableCounter('stream_bytes_written_total', { description: 'Stream body bytes handed to the socket.', unit: 'By' });
  const writes = meter.createObservableCounter('stream_writes_total', { description: 'Stream body writes (chunks or events).' });
  const blocked = meter.createObservableCounter('write_blocked_total', { description: 'Stream writes that met backpressure (write() returned false).' });
  const afterClose = meter.createObservableCounter('stream_writes_after_close_total', { description: 'Writes attempted after the client went away.' });
  const buffered = meter.createObservableGauge('stream_buffered_bytes', { description: 'Bytes queued in user space for open streams (writableLength).', unit: 'By' });
  const internal = meter.createObservableCounter('streamscope_internal_errors_total', { description: 'Faults inside streamscope, swallowed so the app never sees them.' });
  meter.addBatchObservableCallback(
    (r) => {
      try {
        type Now = { bytes: number; writes: number; blocked: number; afterClose: number; buffered: number };
        const now = new Map<string, Now>();
        for (const [route, t] of byRoute) {
          now.set(route, { bytes: t.bytes, writes: t.writes, blocked: t.blocked, afterClose: t.afterClose, buffered: 0 });
          r.observe(active, t.active, { route });
          for (const [method, n] of t.started) r.observe(started, n, { route, method });
        }
        tracker.open.each((s) => {
          // a stream muted at open (no provider then) is never counted: not while open, not at close
          if (s.phase !== Phase.Open || s.slot(kSlot) === undefined) return;
          const route = routeOf(s);
          let t = now.get(route);
          if (t === undefined) {
            t = { bytes: 0, writes: 0, blocked: 0, afterClose: 0, buffered: 0 };
            now.set(route, t);
          }
          t.bytes += s.bytes;
          t.writes += s.writes;
          t.blocked += s.blockedWrites;
          t.afterClose += s.writesAfterClose;
          const res = s.res;
          if (res !== null && !res.destroyed) t.buffered += res.writableLength;
        });
        // closed streams whose producer writes on: their writes after close, not yet in the route totals
        tracker.lingering.each((s) => {
          const counted = s.slot<number | RouteTotals>(kSlot);
          if (typeof counted !== 'number' || s.writesAfterClose === counted) return;
          const route = routeOf(s);
          let t = now.get(route);
          if (t === undefined) {
            t = { bytes: 0, writes: 0, blocked: 0, afterClose: 0, buffered: 0 };
            now.set(route, t);
          }
          t.afterClose += s.writesAfterClose - counted;
        });
        for (const [route, t] of now) {
          const a: Attributes = { route };
          r.observe(bytes, t.bytes, a);
          r.observe(writes, t.writes, a);
          r.observe(blocked, t.blocked, a);
          r.observe(afterClose, t.afterClose, a);
          r.observe(buffered, t.buffered, a);
        }
        for (const [component, n] of tracker.internalErrors) r.observe(internal, n, { component });
      } catch (err) {
        tracker.fault('metrics', err);
      }
    },
    [started, active, bytes, writes, blocked, afterClose, buffered, internal],
  );
  return ins;
}

export const otelMetricsListener: TrackerListener = {
  component: 'otel-metrics',
  open(s) {
    if (instruments === null) {
      // no meter provider: the stream is not counted, so neither are its later events
      if (isNoop()) return false;
      instruments = setUp(otelMetrics.getMeter('streamscope', '0.1.0'));
    }
    const t = totals(routeOf(s));
    s.setSlot(kSlot, t);
    t.started.set(s.method, (t.started.get(s.method) ?? 0) + 1);
    t.active++;
  },
  firstWrite(s) {
    const t = openTotals(s);
    if (instruments === null || t === undefined) return;
    instruments.firstWrite.record((s.firstWriteAt - s.t0) / 1000, t.attrs);
  },
  drain(s, waitedMs) {
    // a blocked episode ends before its stream's close (which ends one itself first)
    const t = openTotals(s);
    if (instruments === null || t === undefined) return;
    instruments.blockedSeconds.record(waitedMs / 1000, t.attrs);
  },
  finding(s, f) {
    if (instruments === null || s.slot(kSlot) === undefined) return;
    instruments.leaks.add(1, { route: routeOf(s), kind: f.kind });
  },
  close(s) {
    const t = openTotals(s);
    if (instruments === null || t === undefined) return;
    instruments.duration.record((s.closedAt - s.t0) / 1000, t.durationOf(s.method, s.outcome as string));
    t.active--;
    t.bytes += s.bytes;
    t.writes += s.writes;
    t.blocked += s.blockedWrites;
    t.afterClose += s.writesAfterClose;
    s.setSlot(kSlot, s.writesAfterClose);
  },
  // after its release, each write after close comes here (no later event would carry it); before close, the open walk counts it
  writeAfterClose(s) {
    if (s.phase >= Phase.Closed) otelMetricsListener.release?.(s);
  },
  release(s) {
    // writes after close that arrived while the stream lingered (or after it was watched again)
    const counted = s.slot<number | RouteTotals>(kSlot);
    if (instruments === null || typeof counted !== 'number' || s.writesAfterClose === counted) return;
    totals(routeOf(s)).afterClose += s.writesAfterClose - counted;
    s.setSlot(kSlot, s.writesAfterClose);
  },
};

/** Registers the OpenTelemetry instruments' listener with the tracker (once per process). */
export function install(): void {
  tracker.register(otelMetricsListener);
}
