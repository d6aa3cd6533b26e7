import cluster from 'node:cluster';
import type { Counter, Gauge, Registry } from 'prom-client';
import { clusterRegistryClass, promClient, promClientFor } from './prom.js';
import { StreamHistogram, type HistogramChild } from './histogram.js';
import { ByMethodOutcome } from './by-method-outcome.js';
import { WriteTotals, type StreamState } from '../core/stream-state.js';
import { getTracker, SWEEP_MS, type TrackerListener } from '../core/tracker.js';
import { kMetricsFold, kMetricsRouteAdded, kMetricsSets } from '../core/symbols.js';
import { isStalled } from './detectors/progress.js';
import { GUARD_NAMES } from './guards.js';

/** Buckets of stream_duration_seconds: 50 ms … 4 h. Public API. */
export const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400];
/** Buckets of stream_first_write_seconds (time to first token). */
export const FIRST_WRITE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Buckets of stream_write_gap_seconds and stream_longest_write_gap_seconds: 5 ms … 60 s. */
export const GAP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Buckets of stream_write_blocked_seconds. */
export const BLOCKED_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300];

export const OTHER_ROUTE = '__other__';

/** Label values known in advance: their series start at 0, so rates and panels work from the first scrape. */
export const LEAK_KINDS = ['stalled_write', 'dangling_stream', 'zombie_producer', 'dangling_async', 'buffered_stream'] as const;
export const RESUME_RESULTS = ['replayed', 'expired', 'invalid'] as const;
export const REJECT_REASONS = ['rate_limited', 'overloaded'] as const;
/** Components that count faults in streamscope_internal_errors_total. */
export const COMPONENTS = [
  'tracker',
  'metrics',
  'tracing',
  'detectors',
  'observer',
  'register',
  'route',
  'onFinding',
  'sse',
  'hub',
  'redis',
  'limits',
  'health',
  'agent',
  'guards',
] as const;

const tracker = getTracker();

/** This consumer's slot on each stream: its RouteMetrics (StreamState.slot), from open. */
const kSlot = tracker.slot('metrics');

/** The route metrics of a stream (null: not opened, or no metric set). */
export function routeMetricsOf(s: StreamState): RouteMetrics | null {
  return s.slot<RouteMetrics>(kSlot) ?? null;
}

/**
 * The sweep's fold of the gauges (`foldBegin` … `foldStream` … `foldEnd`): the pass under way (`gen`) and the last
 * one completed (`done`), shared by every copy of the package: one copy's detectors fold, every copy's scrape reads.
 */
const fold: { gen: number; done: number } = ((globalThis as unknown as Record<symbol, { gen: number; done: number } | undefined>)[kMetricsFold] ??= {
  gen: 0,
  done: 0,
});

/** The metric set of a stream's config (src/setup.ts puts it there). */
function metricsSetOf(s: StreamState): MetricsSet | null {
  return (s.config as { metrics?: MetricsSet | null }).metrics ?? null;
}

type CounterChild = { inc(v?: number): void };

/**
 * One route's metrics. Counters are plain-number running totals here (the write path adds to `totals`, the
 * stream's pointer to them) and move into prom-client at scrape time; the gauges are folded by the sweep
 * (`foldGauges`); only the histograms are observed per stream, once at its first write and once at close. A
 * scrape reads the routes, never the streams.
 */
export class RouteMetrics {
  readonly route: string;
  readonly firstWrite: HistogramChild;
  readonly firstByte: HistogramChild;
  readonly longestGap: HistogramChild;
  readonly blockedSeconds: HistogramChild;
  /** writeGaps routes only: stream_write_gap_seconds (its series exist once a route uses it). */
  private gapChild: HistogramChild | null = null;
  /** Streams open now. */
  active = 0;
  /** Every write, byte, blocked write and write after close of the route's streams so far (the write path adds). */
  readonly totals = new WriteTotals();
  // what of `totals` the counters have (moved at scrape time)
  private pubBytes = 0;
  private pubWrites = 0;
  private pubBlocked = 0;
  private pubAfterClose = 0;
  /** The fold under way (`foldStream`): the pass it is of, the open streams' queued bytes and how many are stalled. */
  foldGen = -1;
  foldBuffered = 0;
  foldStalled = 0;
  /** The last completed fold that saw any of the route's streams open (`foldEnd`): its pass and figures. */
  doneGen = -1;
  buffered = 0;
  stalled = 0;
  private readonly set: MetricsSet;
  private readonly labelSet: { route: string };
  /** Streams opened by method since the last scrape; the last method's count is also `lastStarted` (no lookup). */
  private readonly startedBy = new Map<string, { n: number }>();
  private lastStartedMethod = '';
  private lastStarted: { n: number } | null = null;
  private readonly durationBy = new ByMethodOutcome<HistogramChild>((method, outcome) =>
    this.set.duration.labels({ route: this.route, method, outcome }),
  );
  private readonly leaksBy = new Map<string, CounterChild>();
  private readonly resumesBy = new Map<string, CounterChild>();
  private readonly rejectedBy = new Map<string, CounterChild>();
  private readonly guardsBy = new Map<string, CounterChild>();

  constructor(set: MetricsSet, route: string) {
    this.set = set;
    this.route = route;
    const labels = { route };
    this.labelSet = labels;
    this.firstWrite = set.firstWrite.labels(labels);
    this.firstByte = set.firstByte.labels(labels);
    this.longestGap = set.longestGap.labels(labels);
    this.blockedSeconds = set.blockedSeconds.labels(labels);
    // Every known series of the route starts at 0 rather than being absent until its first event.
    set.active.labels(labels).set(0);
    set.buffered.labels(labels).set(0);
    set.stalled.labels(labels).set(0);
    for (const c of [set.blocked, set.bytes, set.writes, set.afterClose]) c.labels(labels).inc(0);
    for (const k of LEAK_KINDS) this.leak(k).inc(0);
    // stream_resumes_total and stream_rejected_total exist only on routes that use the resilient runtime's
    // resume (the hub) or limits: usesResumes() / usesRejections() start them at 0 when such a stream opens.
  }

  /** A route with `writeGaps`: its stream_write_gap_seconds child. */
  writeGap(): HistogramChild {
    return (this.gapChild ??= this.set.writeGap.labels({ route: this.route }));
  }

  /** A route whose streams run under opt-in guards: its guard actions start at 0 (docs/guards.md). */
  usesGuards(): void {
    if (this.guardsBy.size < GUARD_NAMES.length) for (const g of GUARD_NAMES) this.guardAction(g);
  }

  /** A route served by the hub: its resume results start at 0 (before the first resume, so rate() sees it). */
  usesResumes(): void {
    if (this.resumesBy.size < RESUME_RESULTS.length) for (const r of RESUME_RESULTS) this.resume(r);
  }

  /** A route with limits: the reasons its limits can give start at 0. */
  usesRejections(reasons: readonly string[]): void {
    for (const r of reasons) this.rejected(r);
  }

  /** Counts a stream opened (moved into stream_started_total at scrape time). */
  started(method: string): void {
    let c = this.lastStarted;
    if (c === null || method !== this.lastStartedMethod) {
      c = this.startedBy.get(method) ?? null;
      if (c === null) {
        c = { n: 0 };
        this.startedBy.set(method, c);
      }
      this.lastStartedMethod = method;
      this.lastStarted = c;
    }
    c.n++;
  }

  duration(method: string, outcome: string): HistogramChild {
    return this.durationBy.get(method, outcome);
  }

  /**
   * Scrape time: moves what the running totals gained into the counters, and sets the gauges (active now; queued
   * bytes and stalled streams as of the last fold, 0 when the fold found none of the route's streams open).
   */
  publish(): void {
    const set = this.set;
    const labels = this.labelSet;
    for (const [method, c] of this.startedBy) {
      if (c.n > 0) set.started.inc({ route: this.route, method }, c.n);
      c.n = 0;
    }
    const t = this.totals;
    if (t.bytes > this.pubBytes) set.bytes.inc(labels, t.bytes - this.pubBytes);
    if (t.writes > this.pubWrites) set.writes.inc(labels, t.writes - this.pubWrites);
    if (t.blocked > this.pubBlocked) set.blocked.inc(labels, t.blocked - this.pubBlocked);
    if (t.afterClose > this.pubAfterClose) set.afterClose.inc(labels, t.afterClose - this.pubAfterClose);
    this.pubBytes = t.bytes;
    this.pubWrites = t.writes;
    this.pubBlocked = t.blocked;
    this.pubAfterClose = t.afterClose;
    set.active.set(labels, this.active);
    // a route the last completed fold did not see (none of its streams open then) has nothing queued or stalled
    const folded = this.doneGen === fold.done;
    set.buffered.set(labels, folded ? this.buffered : 0);
    set.stalled.set(labels, folded ? this.stalled : 0);
  }

  leak(kind: string): CounterChild {
    let c = this.leaksBy.get(kind);
    if (c === undefined) {
      c = this.set.leaks.labels({ route: this.route, kind });
      this.leaksBy.set(kind, c);
    }
    return c;
  }

  resume(result: string): CounterChild {
    let c = this.resumesBy.get(result);
    if (c === undefined) {
      c = this.set.resumes.labels({ route: this.route, result });
      c.inc(0);
      this.resumesBy.set(result, c);
      this.usesResumes();
    }
    return c;
  }

  guardAction(guard: string): CounterChild {
    let c = this.guardsBy.get(guard);
    if (c === undefined) {
      c = this.set.guardActions.labels({ route: this.route, guard });
      c.inc(0);
      this.guardsBy.set(guard, c);
      this.usesGuards();
    }
    return c;
  }

  rejected(reason: string): CounterChild {
    let c = this.rejectedBy.get(reason);
    if (c === undefined) {
      c = this.set.rejected.labels({ route: this.route, reason });
      c.inc(0);
      this.rejectedBy.set(reason, c);
    }
    return c;
  }
}

/** The metrics of the contract in one registry under one prefix. */
export class MetricsSet {
  readonly registry: Registry;
  readonly prefix: string;
  readonly maxRoutes: number;
  readonly duration: StreamHistogram;
  readonly active: Gauge<'route'>;
  readonly blocked: Counter<'route'>;
  readonly started: Counter<'route' | 'method'>;
  readonly firstWrite: StreamHistogram;
  readonly firstByte: StreamHistogram;
  readonly longestGap: StreamHistogram;
  readonly writeGap: StreamHistogram;
  readonly blockedSeconds: StreamHistogram;
  readonly bytes: Counter<'route'>;
  readonly writes: Counter<'route'>;
  readonly buffered: Gauge<'route'>;
  readonly stalled: Gauge<'route'>;
  readonly leaks: Counter<'route' | 'kind'>;
  readonly afterClose: Counter<'route'>;
  readonly resumes: Counter<'route' | 'result'>;
  readonly rejected: Counter<'route' | 'reason'>;
  readonly guardActions: Counter<'route' | 'guard'>;
  readonly internal: Counter<'component'>;
  /** Every metric of the set, which src/consumers/exposition.ts renders itself at a scrape through metricsHandler(). */
  readonly families: readonly object[];
  private readonly routes = new Map<string, RouteMetrics>();
  private readonly reportedFaults = new Map<string, number>();

  constructor(registry: Registry, prefix: string, maxRoutes: number) {
    this.registry = registry;
    this.prefix = prefix;
    this.maxRoutes = maxRoutes;
    // The classes of the client that made the registry (the application's prom-client or @prometheus-io/client).
    const { Counter, Gauge } = promClientFor(registry);
    const registers = [registry];
    const sync = (): void => this.sync();
    const n = (name: string): string => prefix + name;
    this.duration = new StreamHistogram({
      name: n('stream_duration_seconds'),
      help: 'Streaming response duration, open to close, by outcome.',
      labelNames: ['route', 'method', 'outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.active = new Gauge({ name: n('stream_active_connections'), help: 'Streams open now.', labelNames: ['route'], registers, collect: sync });
    this.blocked = new Counter({
      name: n('write_blocked_total'),
      help: 'Stream writes that met backpressure (write() returned false).',
      labelNames: ['route'],
      registers,
      collect: sync,
    });
    this.started = new Counter({ name: n('stream_started_total'), help: 'Streams opened.', labelNames: ['route', 'method'], registers, collect: sync });
    this.firstWrite = new StreamHistogram({
      name: n('stream_first_write_seconds'),
      help: 'Open to first body byte (time to first token).',
      labelNames: ['route'],
      buckets: FIRST_WRITE_BUCKETS,
      registers,
    });
    this.firstByte = new StreamHistogram({
      name: n('stream_first_byte_seconds'),
      help: 'Open to first body byte handed to the socket (differs from first write when something buffers).',
      labelNames: ['route'],
      buckets: FIRST_WRITE_BUCKETS,
      registers,
    });
    this.longestGap = new StreamHistogram({
      name: n('stream_longest_write_gap_seconds'),
      help: 'Per stream, the longest gap between writes, seen by the sweep, observed at close.',
      labelNames: ['route'],
      buckets: GAP_BUCKETS,
      registers,
    });
    this.writeGap = new StreamHistogram({
      name: n('stream_write_gap_seconds'),
      help: 'Every gap between writes (inter-chunk latency), on routes with writeGaps.',
      labelNames: ['route'],
      buckets: GAP_BUCKETS,
      registers,
    });
    this.blockedSeconds = new StreamHistogram({
      name: n('stream_write_blocked_seconds'),
      help: 'Time a blocked write waited for drain (or close).',
      labelNames: ['route'],
      buckets: BLOCKED_BUCKETS,
      registers,
    });
    this.bytes = new Counter({
      name: n('stream_bytes_written_total'),
      help: 'Stream body bytes handed to the socket.',
      labelNames: ['route'],
      registers,
      collect: sync,
    });
    this.writes = new Counter({
      name: n('stream_writes_total'),
      help: 'Stream body writes (chunks or events).',
      labelNames: ['route'],
      registers,
      collect: sync,
    });
    this.buffered = new Gauge({
      name: n('stream_buffered_bytes'),
      help: `Bytes queued in user space for open streams (writableLength), as of the last sweep (every ${SWEEP_MS} ms): streams blocked on drain or written to since the sweep before.`,
      labelNames: ['route'],
      registers,
      collect: sync,
    });
    this.stalled = new Gauge({
      name: n('stream_stalled'),
      help: `Open streams whose blocked write has made no progress for stallAfterMs, as of the last sweep (every ${SWEEP_MS} ms).`,
      labelNames: ['route'],
      registers,
      collect: sync,
    });
    this.leaks = new Counter({ name: n('stream_leaks_total'), help: 'Leak-detector findings by kind.', labelNames: ['route', 'kind'], registers });
    this.afterClose = new Counter({
      name: n('stream_writes_after_close_total'),
      help: 'Writes attempted after the client went away.',
      labelNames: ['route'],
      registers,
      collect: sync,
    });
    this.resumes = new Counter({ name: n('stream_resumes_total'), help: 'Resume attempts by result.', labelNames: ['route', 'result'], registers });
    this.rejected = new Counter({ name: n('stream_rejected_total'), help: 'Refused streams by reason.', labelNames: ['route', 'reason'], registers });
    this.guardActions = new Counter({
      name: n('stream_guard_actions_total'),
      help: 'Streams cut or producers stopped by an opt-in guard (docs/guards.md).',
      labelNames: ['route', 'guard'],
      registers,
    });
    this.internal = new Counter({
      name: n('streamscope_internal_errors_total'),
      help: 'Faults inside streamscope, swallowed so the app never sees them.',
      labelNames: ['component'],
      registers,
      collect: () => this.collectFaults(),
    });
    this.families = [
      this.duration,
      this.active,
      this.blocked,
      this.started,
      this.firstWrite,
      this.firstByte,
      this.longestGap,
      this.writeGap,
      this.blockedSeconds,
      this.bytes,
      this.writes,
      this.buffered,
      this.stalled,
      this.leaks,
      this.afterClose,
      this.resumes,
      this.rejected,
      this.guardActions,
      this.internal,
    ];
  }

  /** The label children of a route; past maxRoutes distinct values, `__other__`. */
  route(name: string): RouteMetrics {
    let rm = this.routes.get(name);
    if (rm !== undefined) return rm;
    if (this.routes.size >= this.maxRoutes) {
      rm = this.routes.get(OTHER_ROUTE);
      if (rm === undefined) {
        rm = new RouteMetrics(this, OTHER_ROUTE);
        this.routes.set(OTHER_ROUTE, rm);
        this.routeAdded();
      }
      return rm;
    }
    rm = new RouteMetrics(this, name);
    this.routes.set(name, rm);
    this.routeAdded();
    return rm;
  }

  /** A route's series are new: metricsHandler() pre-renders them before the next scrape (src/consumers/exposition.ts). */
  private routeAdded(): void {
    try {
      (this.registry as unknown as Record<symbol, (() => void) | undefined>)[kMetricsRouteAdded]?.();
    } catch (err) {
      tracker.fault('metrics', err);
    }
  }

  private syncing = false;

  /**
   * Scrape time: publishes every route (its running totals into the counters, the sweep's last fold into the
   * gauges): work per route, none per stream. Every collect() calls it; registry.metrics() starts them all in one
   * synchronous loop, so a microtask flag makes it run once.
   */
  sync(): void {
    if (this.syncing) return;
    this.syncing = true;
    queueMicrotask(() => {
      this.syncing = false;
    });
    try {
      for (const rm of this.routes.values()) rm.publish();
    } catch (err) {
      tracker.fault('metrics', err);
    }
  }

  collectFaults(): void {
    for (const component of COMPONENTS) if (!this.reportedFaults.has(component)) {
      this.internal.labels({ component }).inc(0);
      this.reportedFaults.set(component, 0);
    }
    for (const [component, count] of tracker.internalErrors) {
      const seen = this.reportedFaults.get(component) ?? 0;
      if (count > seen) {
        this.internal.labels({ component }).inc(count - seen);
        this.reportedFaults.set(component, count);
      }
    }
  }
}

/*
 * The gauges' fold. The detectors' sweep (src/consumers/detectors/index.ts) folds `stream_buffered_bytes` and
 * `stream_stalled` per route (`foldStream`, after its stall checks, so the gauge agrees with the findings of the
 * same sweep) over the streams that can count: the blocked ones (the only ones that can be stalled or queue past
 * their highWaterMark) and those written to since the sweep before (a write's bytes may wait in their queue); a
 * stream neither blocked nor written to queues less than its highWaterMark, normally nothing (docs/metrics.md,
 * "Cost"). No pass walks every open stream; a scrape publishes the last completed fold.
 */

/** Routes the fold under way has touched (their figures are published at its end). */
const touched: RouteMetrics[] = [];

/** A sweep's pass over the open streams starts: returns its generation. */
export function foldBegin(): number {
  touched.length = 0;
  return ++fold.gen;
}

/** One open stream, in the pass `gen`: its queued bytes and whether it is stalled, added to its route's figures. */
export function foldStream(s: StreamState, now: number, gen: number): void {
  const rm = s.slot<RouteMetrics>(kSlot);
  if (rm === undefined) return;
  if (rm.foldGen !== gen) {
    rm.foldGen = gen;
    rm.foldBuffered = 0;
    rm.foldStalled = 0;
    touched.push(rm);
  }
  const res = s.res;
  if (res !== null && !res.destroyed) rm.foldBuffered += res.writableLength;
  if (s.blockedSince >= 0 && isStalled(s, now)) rm.foldStalled++;
}

/** The pass `gen` went over every open stream: its figures are what a scrape reads from now on. */
export function foldEnd(gen: number): void {
  if (gen !== fold.gen) return;
  for (const rm of touched) {
    rm.doneGen = gen;
    rm.buffered = rm.foldBuffered;
    rm.stalled = rm.foldStalled;
  }
  touched.length = 0;
  fold.done = gen;
}

type WithSets = Registry & { [kMetricsSets]?: Map<string, MetricsSet> };

let answering = false;

/**
 * In a node:cluster worker, the global register answers the primary's clusterMetricsHandler(): the client
 * installs that answer when its ClusterRegistry (prom-client: AggregatorRegistry) is created, as its cluster
 * example does in every process.
 */
function answerClusterPrimary(): void {
  if (answering || !cluster.isWorker) return;
  answering = true;
  try {
    new (clusterRegistryClass(promClient()))();
  } catch (err) {
    tracker.fault('metrics', err);
  }
}

/** The metric set of a registry and prefix, created once. Throws when the registry does. */
export function getMetricsSet(registry?: Registry, prefix = '', maxRoutes = 200): MetricsSet {
  if (registry === undefined) {
    registry = promClient().register;
    answerClusterPrimary();
  }
  const r = registry as WithSets;
  let sets = r[kMetricsSets];
  if (sets === undefined) {
    sets = new Map();
    Object.defineProperty(r, kMetricsSets, { value: sets, enumerable: false });
  }
  let set = sets.get(prefix);
  if (set === undefined) {
    set = new MetricsSet(registry, prefix, maxRoutes);
    sets.set(prefix, set);
  }
  return set;
}

/** Moves each stream's lifecycle into its metric set. */
export const metricsListener: TrackerListener = {
  component: 'metrics',
  open(s) {
    const set = metricsSetOf(s);
    if (set === null) return;
    const rm = set.route(s.route);
    s.setSlot(kSlot, rm);
    // its writes (and those it made while pending) go to the route's running totals from now on
    tracker.countInto(s, rm.totals);
    rm.started(s.method);
    rm.active++;
  },
  firstWrite(s) {
    routeMetricsOf(s)?.firstWrite.observe((s.firstWriteAt - s.t0) / 1000);
  },
  drain(s, waitedMs) {
    routeMetricsOf(s)?.blockedSeconds.observe(waitedMs / 1000);
  },
  close(s) {
    const rm = routeMetricsOf(s);
    if (rm === null) return;
    rm.duration(s.method, s.outcome as string).observe((s.closedAt - s.t0) / 1000);
    // the route's last open stream closed: nothing of it is queued or stalled, whatever the last fold saw
    if (--rm.active === 0) rm.buffered = rm.stalled = 0;
  },
  finding(s, f) {
    // A guard's action is counted in stream_guard_actions_total, not as a leak.
    if (f.kind !== 'guard_action') routeMetricsOf(s)?.leak(f.kind).inc();
  },
};

/** Registers the metrics with the tracker (once per process). */
export function install(): void {
  tracker.register(metricsListener);
}
