import { atShutdown } from '../core/switch.js';
import { kMetricsRouteAdded, kMetricsSets } from '../core/symbols.js';
import { contextFor, perMetricOf, type AnyMetric, type ClientRegistry } from './exposition.js';
import { StreamHistogram } from './histogram.js';

/**
 * Rendering done before a scrape, off the request path, into the caches a scrape of metricsHandler() serves from
 * (src/consumers/exposition.ts; docs/metrics.md, "Scrape cost"). Two occasions:
 *
 * - the pre-render: a while after metricsHandler() is made and after new routes appear, the probe of the
 *   client's escaping and the first render of every series, so the first scrape finds them cached;
 * - the refresh: once a registry has been scraped at least twice, its scrape interval is known (the shortest of
 *   the last few gaps between scrapes), and shortly before the next scrape is due what changed since the last
 *   one (histogram children whose count moved, counter and gauge families whose samples differ) is rendered, so
 *   the scrape itself renders only what changed in the last moments. Streams opened between two scrapes change
 *   every route's started, active and first-write series: without it the next scrape rendered all of them.
 *
 * Both render in slices of PRERENDER_SLICE_MS (setImmediate between), from unref'd timers. Nothing is done per
 * write or per stream: a pass costs per series, and only when due. Nothing is done for a registry nobody scrapes
 * (beyond its pre-render): the refresh follows the scrapes, and stops once the last scrape is REFRESH_IDLE_MS
 * old (or two intervals, if longer). A scrape stops a pass under way (it has rendered what was stale);
 * shutdown() clears every timer and stops every pass.
 */

/** How long after a handler is made, or a route appears, its registry is pre-rendered (a burst of new routes, once). */
export const PRERENDER_DELAY_MS = 100;
/** A pass yields to the loop (setImmediate) after this much work at a time, or this many series rendered. */
export const PRERENDER_SLICE_MS = 2;
export const PRERENDER_SLICE_CHILDREN = 256;
/** Scrapes closer together than this do not teach an interval (a person reloading, a test): no refresh from them. */
export const REFRESH_MIN_INTERVAL_MS = 200;
/** The interval is the shortest of this many last gaps (two scrapers of one target alternate two gaps). */
export const REFRESH_GAPS = 4;
/** The refresh starts this share of the interval before the next scrape is due, within the bounds below. */
export const REFRESH_LEAD = 0.1;
export const REFRESH_LEAD_MIN_MS = 50;
export const REFRESH_LEAD_MAX_MS = 1000;
/** No refresh once the last scrape is older than this (or two intervals, if longer): until the next scrape. */
export const REFRESH_IDLE_MS = 120_000;

type Timer = ReturnType<typeof setTimeout>;

/** Per registry served by a handler. */
interface State {
  /** The pre-render's timer. */
  timer: Timer | null;
  /** The refresh's timer. */
  refresh: Timer | null;
  /** A pass (pre-render or refresh) is under way. */
  running: boolean;
  /** A pre-render was asked for while a pass was under way: it follows. */
  again: boolean;
  /** Bumped by a scrape and by shutdown(): a pass under way stops at its next slice. */
  gen: number;
  /** When the last scrape was served (performance.now()), -1 before the first. */
  last: number;
  /** The last gaps between scrapes of at least REFRESH_MIN_INTERVAL_MS, oldest first. */
  gaps: number[];
}

const states = new WeakMap<object, State>();
/** States with a timer set or a pass under way (what shutdown() has to stop). */
const busy = new Set<State>();

/**
 * Counts of the passes' work, read by tests (counted rather than timed): pre-render passes, refresh passes,
 * slices, histogram children and counter or gauge families rendered, pre-renders scheduled or under way,
 * registries with a refresh scheduled.
 */
export const prerenderStats = { runs: 0, refreshes: 0, slices: 0, children: 0, families: 0, pending: 0, scheduled: 0 };

function stateOf(registry: object): State {
  let s = states.get(registry);
  if (s === undefined) {
    s = { timer: null, refresh: null, running: false, again: false, gen: 0, last: -1, gaps: [] };
    states.set(registry, s);
  }
  return s;
}

function idle(s: State): void {
  if (s.timer === null && s.refresh === null && !s.running) busy.delete(s);
}

/**
 * Schedules a pre-render of the registry's streamscope series, PRERENDER_DELAY_MS from now (once for a burst of
 * calls). The registry's metric sets call it back when they make a route. Never throws.
 */
export function prerender(registry: object): void {
  const first = !states.has(registry);
  const s = stateOf(registry);
  if (first) {
    try {
      if (!Object.hasOwn(registry, kMetricsRouteAdded)) {
        Object.defineProperty(registry, kMetricsRouteAdded, { value: () => prerender(registry), enumerable: false, configurable: true });
      }
    } catch {
      // a frozen registry: pre-rendered once, from the handler
    }
  }
  if (s.running) {
    s.again = true;
    return;
  }
  if (s.timer !== null) return;
  prerenderStats.pending++;
  busy.add(s);
  s.timer = setTimeout(() => {
    s.timer = null;
    if (s.running) {
      // a refresh under way: the pre-render follows it
      prerenderStats.pending--;
      s.again = true;
      return;
    }
    void pass(registry, s, false);
  }, PRERENDER_DELAY_MS);
  s.timer.unref?.();
}

/**
 * metricsHandler() served a scrape of the registry from the caches, asked at `at` (performance.now()): learns the
 * interval and schedules the refresh before the next scrape. Never throws.
 */
export function scraped(registry: object, at: number): void {
  const s = stateOf(registry);
  s.gen++;
  if (s.last >= 0 && at - s.last >= REFRESH_MIN_INTERVAL_MS) {
    s.gaps.push(at - s.last);
    if (s.gaps.length > REFRESH_GAPS) s.gaps.shift();
  }
  s.last = at;
  if (s.gaps.length > 0) schedule(registry, s, at + Math.min(...s.gaps));
}

/** Sets the refresh for a scrape expected at `expected`: if that scrape does not come, the one an interval later. */
function schedule(registry: object, s: State, expected: number): void {
  const interval = Math.min(...s.gaps);
  const lead = Math.min(REFRESH_LEAD_MAX_MS, Math.max(REFRESH_LEAD_MIN_MS, interval * REFRESH_LEAD));
  const now = performance.now();
  // a loop held past a due time: the next one ahead, never a run of late timers
  while (expected - lead <= now) expected += interval;
  if (s.refresh === null) prerenderStats.scheduled++;
  else clearTimeout(s.refresh);
  busy.add(s);
  s.refresh = setTimeout(() => {
    s.refresh = null;
    prerenderStats.scheduled--;
    if (performance.now() - s.last > Math.max(REFRESH_IDLE_MS, 2 * interval)) {
      // nobody scrapes any more: nothing until the next scrape
      idle(s);
      return;
    }
    schedule(registry, s, expected + interval);
    if (!s.running) void pass(registry, s, true);
  }, expected - lead - now);
  s.refresh.unref?.();
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** One pass (a pre-render or a refresh), its state kept; never rejects. */
async function pass(registry: object, s: State, refresh: boolean): Promise<void> {
  s.running = true;
  busy.add(s);
  const gen = s.gen;
  try {
    await render(registry as ClientRegistry, () => s.gen !== gen, refresh);
  } catch {
    // a scrape meets the same fault and answers it (fallback or 500)
  } finally {
    s.running = false;
    if (!refresh) prerenderStats.pending--;
    if (s.again) {
      s.again = false;
      prerender(registry);
    }
    idle(s);
  }
}

/**
 * What a scrape would render, into the same caches: every histogram child and counter or gauge family whose
 * cached text is stale (all of them the first time), yielding every PRERENDER_SLICE_MS or PRERENDER_SLICE_CHILDREN
 * rendered; stops at a slice's end once `stopped()`.
 */
async function render(r: ClientRegistry, stopped: () => boolean, refresh: boolean): Promise<void> {
  const sets = r[kMetricsSets];
  const per = sets === undefined || sets.size === 0 ? undefined : perMetricOf(r);
  if (sets === undefined || per === undefined) return;
  let ctx = contextFor(r, per);
  if (ctx instanceof Promise) ctx = await ctx;
  if (ctx === null || stopped()) return;
  if (refresh) prerenderStats.refreshes++;
  else prerenderStats.runs++;
  prerenderStats.slices++;
  const families: AnyMetric[] = [];
  const histograms: StreamHistogram[] = [];
  for (const set of [...sets.values()]) {
    for (const m of set.families ?? []) {
      if (m instanceof StreamHistogram) histograms.push(m);
      else families.push(m as AnyMetric);
    }
  }
  // the counters' and gauges' get() all start in one synchronous loop, as in a scrape: their collect() publishes
  // every route once, not once per family (one that fails is left to the scrape, which answers it)
  const gets = families.map((m) => {
    try {
      return Promise.resolve(m.get()).catch(() => undefined);
    } catch {
      return undefined;
    }
  });
  let t0 = performance.now();
  let rendered = 0;
  let visited = 0;
  /** True when the pass is to stop. */
  const pause = async (): Promise<boolean> => {
    if (performance.now() - t0 < PRERENDER_SLICE_MS && rendered < PRERENDER_SLICE_CHILDREN) return false;
    await turn();
    if (stopped()) return true;
    prerenderStats.slices++;
    t0 = performance.now();
    rendered = 0;
    return false;
  };
  const count = { rendered: 0 };
  for (let i = 0; i < families.length; i++) {
    const d = await gets[i];
    const before = count.rendered;
    if (d !== undefined) ctx.dataBuf(families[i]!, d, count);
    if (count.rendered > before) {
      prerenderStats.families++;
      rendered++;
    }
    if (await pause()) return;
  }
  for (const h of histograms) {
    for (const c of h.childList()) {
      if ((rendered >= PRERENDER_SLICE_CHILDREN || (++visited & 15) === 0) && (await pause())) return;
      if (ctx.warmChild(h, c)) {
        prerenderStats.children++;
        rendered++;
      }
    }
    if (await pause()) return;
  }
}

/** shutdown(): every timer cleared, every pass under way stopped at its next slice. */
function stopAll(): void {
  for (const s of busy) {
    if (s.timer !== null) {
      clearTimeout(s.timer);
      s.timer = null;
      prerenderStats.pending--;
    }
    if (s.refresh !== null) {
      clearTimeout(s.refresh);
      s.refresh = null;
      prerenderStats.scheduled--;
    }
    s.again = false;
    s.gen++;
    s.gaps.length = 0;
    idle(s);
  }
}
atShutdown(stopAll, 20);
