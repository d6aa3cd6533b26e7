import { kMetricsSets } from '../core/symbols.js';
import { StreamHistogram, type HistogramChild } from './histogram.js';

/**
 * The text of a scrape, as `registry.metrics()` would give it byte for byte, with streamscope's own families
 * rendered here from label strings cached per series (docs/metrics.md, "Scrape cost"). With 200 routes
 * streamscope has about 19,000 series; the client formats each sample from its label object (entries, three
 * escapes per label, an array spread and join), which is most of a scrape's time and garbage. Here a sample is its
 * cached prefix and its value. The client still formats every other metric of the registry, its metric order
 * and joins are kept, and whatever cannot be shown identical falls back to the client (`fastMetrics()` answers
 * undefined): a registry whose `metrics()` is overridden, default labels of an unknown shape, an escaping the
 * probe does not recognise.
 */

const OPENMETRICS = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/** A client's escaping: `escapeString` (names, help) and `escapeLabelValue` (label values). */
interface Escaping {
  str(s: string): string;
  label(s: string): string;
}

/** prom-client 15 and @prometheus-io/client. */
const ESC_15: Escaping = {
  str: (s) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n'),
  label: (s) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"'),
};
/** prom-client 14 (a backslash before `n` is left as it is). */
const ESC_14: Escaping = {
  str: (s) => s.replace(/\n/g, '\\n').replace(/\\(?!n)/g, '\\\\'),
  label: (s) => s.replace(/\n/g, '\\n').replace(/\\(?!n)/g, '\\\\').replace(/"/g, '\\"'),
};

/** The clients' getValueAsString. */
function valueText(v: number): string {
  if (Number.isNaN(v)) return 'Nan';
  if (!Number.isFinite(v)) return v < 0 ? '-Inf' : '+Inf';
  return `${v}`;
}

type Labels = Record<string, unknown>;
interface Sample {
  labels?: Labels;
  value: number;
  metricName?: string;
  sharedLabels?: unknown;
  exemplar?: unknown;
}
interface MetricData {
  name: string;
  help: string;
  type: string;
  values?: Sample[];
}
/** What the client's registry has of each metric (prom-client's metric interface). */
interface AnyMetric {
  name: string;
  type: string;
  get(): Promise<MetricData> | MetricData;
}
/** The registry methods the fast path needs (prom-client 14, 15, @prometheus-io/client). */
interface ClientRegistry {
  metrics(): Promise<string>;
  getMetricsAsArray(): AnyMetric[];
  contentType: string;
  _defaultLabels?: unknown;
  [kMetricsSets]?: Map<string, { families?: readonly object[] }>;
}
type PerMetric = (this: ClientRegistry, metric: AnyMetric) => Promise<string>;

/** One registry's way of rendering, for one state of its default labels and content type. */
class Context {
  readonly key: string;
  readonly esc: Escaping;
  readonly om: boolean;
  /** Default labels, in the registry's order. */
  private readonly defaults: Array<[string, unknown]>;
  /** Label object → its rendered labels (without braces), default labels included. */
  private readonly cache = new WeakMap<object, string>();
  /** Histogram → its `name_bucket{le="…"` prefixes, one per bound and +Inf. */
  private readonly prefixes = new WeakMap<StreamHistogram, string[]>();
  /**
   * Histogram child → its lines as of its last render, and the state they show (the histogram's reset epoch, the
   * child's count: every observation raises it). Most children do not change between two scrapes (a route's
   * histograms move when its streams open or close), so most of a scrape is cached text.
   */
  private readonly blocks = new WeakMap<HistogramChild, { epoch: number; count: number; text: string }>();

  constructor(key: string, esc: Escaping, om: boolean, defaults: Array<[string, unknown]>) {
    this.key = key;
    this.esc = esc;
    this.om = om;
    this.defaults = defaults;
  }

  private value(v: unknown): string {
    return typeof v === 'string' ? this.esc.label(v) : `${v as string}`;
  }

  /** A label set's rendered labels as the client renders them: its own in order, then the defaults it lacks. */
  private render(labels: Labels, except?: string): string {
    let out = '';
    for (const name in labels) {
      if (!Object.hasOwn(labels, name)) continue;
      out += `${out === '' ? '' : ','}${name}="${this.value(labels[name])}"`;
    }
    for (const [name, v] of this.defaults) {
      if (Object.hasOwn(labels, name) || name === except) continue;
      out += `${out === '' ? '' : ','}${name}="${this.value(v)}"`;
    }
    return out;
  }

  /** Cached per label object: streamscope's label objects are created once per series and never changed. */
  labels(labels: Labels): string {
    let s = this.cache.get(labels);
    if (s === undefined) {
      s = this.render(labels);
      this.cache.set(labels, s);
    }
    return s;
  }

  /** A histogram child's labels after `le` (its bucket lines carry `le` first, then these). */
  private childLabels(c: HistogramChild): string {
    let s = this.cache.get(c);
    if (s === undefined) {
      s = this.render(c.labels, 'le');
      this.cache.set(c, s);
    }
    return s;
  }

  /** The text of a get() answer, as the client's per-metric formatter gives it; undefined where it would differ. */
  data(d: MetricData): string | undefined {
    const name = this.esc.str(d.name);
    // built by concatenation: V8 keeps it a rope until the response writes it (one copy, not one per join)
    let out = `# HELP ${name} ${this.esc.str(d.help)}\n# TYPE ${name} ${d.type}`;
    const counterOm = this.om && d.type === 'counter';
    for (const v of d.values ?? []) {
      if (v.sharedLabels !== undefined || (v.exemplar && this.om)) return undefined;
      const inner = v.labels === undefined ? this.render({}) : this.labels(v.labels);
      const metricName = counterOm ? `${v.metricName ?? name}_total` : (v.metricName ?? name);
      out += `\n${metricName}${inner === '' ? '' : `{${inner}}`} ${valueText(v.value)}`;
    }
    return out;
  }

  /** A StreamHistogram's text, the same as the client gives for its get(): `le` first, then the child's labels. */
  histogram(h: StreamHistogram): string {
    const name = this.esc.str(h.name);
    let out = `# HELP ${name} ${this.esc.str(h.help)}\n# TYPE ${name} ${h.type}`;
    let pre = this.prefixes.get(h);
    if (pre === undefined) {
      pre = [...h.upperBounds.map((b) => `\n${h.name}_bucket{le="${b}"`), `\n${h.name}_bucket{le="+Inf"`];
      this.prefixes.set(h, pre);
    }
    const n = h.upperBounds.length;
    const sumName = `\n${h.name}_sum`;
    const countName = `\n${h.name}_count`;
    for (const c of h.childList()) {
      const block = this.blocks.get(c);
      if (block !== undefined && block.epoch === h.epoch && block.count === c.count) {
        out += block.text;
        continue;
      }
      const inner = this.childLabels(c);
      const tail = inner === '' ? '} ' : `,${inner}} `;
      const bare = inner === '' ? ' ' : `{${inner}} `;
      // joined, not concatenated: the cached text is then one flat string, not a tree of its pieces that every
      // scrape's response would walk again
      const parts: string[] = [];
      let acc = 0;
      for (let i = 0; i < n; i++) {
        acc += c.counts[i] as number;
        parts.push(pre[i]!, tail, valueText(acc));
      }
      parts.push(pre[n]!, tail, valueText(c.count), sumName, bare, valueText(c.sum), countName, bare, valueText(c.count));
      const text = parts.join('');
      this.blocks.set(c, { epoch: h.epoch, count: c.count, text });
      out += text;
    }
    return out;
  }
}

/** The client's per-metric formatter of a registry, when its `metrics()` is the client's own (not overridden). */
function perMetricOf(registry: ClientRegistry): PerMetric | undefined {
  // an app that replaced metrics() on its registry object serves what its own gives
  if (Object.hasOwn(registry, 'metrics')) return undefined;
  for (let p = Object.getPrototypeOf(registry) as Record<string, unknown> | null; p !== null; p = Object.getPrototypeOf(p) as Record<string, unknown> | null) {
    if (!Object.hasOwn(p, 'metrics')) continue;
    // the class that defines metrics() must be the one whose per-metric formatter it joins
    const per = (Object.hasOwn(p, 'getMetricsAsString') ? p.getMetricsAsString : Object.hasOwn(p, 'getMetricAsPrometheusString') ? p.getMetricAsPrometheusString : undefined) as PerMetric | undefined;
    return typeof per === 'function' && typeof (p as { getMetricsAsArray?: unknown }).getMetricsAsArray === 'function' ? per : undefined;
  }
  return undefined;
}

/** A label value the clients escape differently (backslashes, `\n` spelled out, quotes, a newline). */
const TRICKY = 'a\\nb"c\nd\\e\\\\';

/**
 * Which escaping the client uses, checked against the client itself: a probe metric (never registered) formatted
 * by the registry's own per-metric formatter (with its default labels and content type) must equal ours exactly.
 */
async function probe(registry: ClientRegistry, per: PerMetric, om: boolean, defaults: Array<[string, unknown]>, key: string): Promise<Context | null> {
  const metrics: MetricData[] = [
    {
      name: 'streamscope_probe',
      help: `probe ${TRICKY}`,
      type: 'gauge',
      values: [
        { labels: { route: TRICKY, b: 'x' }, value: 1.5 },
        { labels: {}, value: Number.NaN },
        { labels: { le: 0.5, route: 'y' }, value: Number.POSITIVE_INFINITY, metricName: 'streamscope_probe_bucket' },
        { labels: { route: 'z' }, value: -1e-7 },
      ],
    },
    { name: 'streamscope_probe_total', help: 'probe', type: 'counter', values: [{ labels: { route: TRICKY }, value: 3 }] },
  ];
  for (const esc of [ESC_15, ESC_14]) {
    const ctx = new Context(key, esc, om, defaults);
    let same = true;
    for (const d of metrics) {
      // metrics() strips a counter's _total before formatting it in OpenMetrics (the client then appends it)
      const probeMetric: AnyMetric = { name: om && d.type === 'counter' ? d.name.replace(/_total$/, '') : d.name, type: d.type, get: () => Promise.resolve({ ...d, name: probeMetric.name }) };
      const theirs = await per.call(registry, probeMetric);
      if (theirs !== ctx.data({ ...d, name: probeMetric.name })) same = false;
    }
    if (same) return ctx;
  }
  return null;
}

/** Per registry: its context (null: the fast path is off for its current state). */
const contexts = new WeakMap<object, { key: string; ctx: Context | null }>();

/** The registry's current context, probed again when its default labels or content type change. */
function contextFor(registry: ClientRegistry, per: PerMetric): Context | null | Promise<Context | null> {
  const d = registry._defaultLabels;
  if (d === null || typeof d !== 'object') return null;
  const defaults = Object.entries(d);
  // names the clients would order differently (an integer-like key goes first in a spread) or that clash with `le`
  if (defaults.some(([name]) => name === 'le' || !/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name))) return null;
  const om = registry.contentType === OPENMETRICS;
  const key = `${om ? 'om' : 'text'}\u0000${JSON.stringify(defaults)}`;
  const known = contexts.get(registry);
  if (known !== undefined && known.key === key) return known.ctx;
  return probe(registry, per, om, defaults, key).then(
    (ctx) => {
      contexts.set(registry, { key, ctx });
      return ctx;
    },
    () => null,
  );
}

/** How many scrapes took the fast path (a test reads it: the path is taken, counted rather than timed). */
export const expositionStats = { fast: 0, fallback: 0 };

/**
 * The registry's text as its `metrics()` gives it, streamscope's families rendered here; undefined when the
 * fast path does not apply (then the caller asks `registry.metrics()`).
 */
export async function fastMetrics(registry: object): Promise<string | undefined> {
  const r = registry as ClientRegistry;
  const sets = r[kMetricsSets];
  const per = sets === undefined || sets.size === 0 ? undefined : perMetricOf(r);
  if (sets === undefined || per === undefined) {
    expositionStats.fallback++;
    return undefined;
  }
  let ctx = contextFor(r, per);
  if (ctx instanceof Promise) ctx = await ctx;
  if (ctx === null) {
    expositionStats.fallback++;
    return undefined;
  }
  const owned = new Set<object>();
  // (a set made by another copy or version of streamscope may have no `families`: its metrics go to the client)
  for (const set of sets.values()) for (const f of set.families ?? []) owned.add(f);
  const om = ctx.om;
  const c = ctx;
  // metrics()'s own loop: every metric's get() starts in this one synchronous pass, in registry order
  const parts: Array<string | Promise<string>> = [];
  for (const m of r.getMetricsAsArray()) {
    if (om && m.type === 'counter') m.name = m.name.replace(/_total$/, '');
    if (!owned.has(m)) parts.push(per.call(r, m));
    else if (m instanceof StreamHistogram) parts.push(c.histogram(m));
    else {
      const got = m.get();
      parts.push(Promise.resolve(got).then((d) => c.data(d) ?? per.call(r, m)));
    }
  }
  const texts = await Promise.all(parts);
  expositionStats.fast++;
  const sep = om ? '\n' : '\n\n';
  let out = '';
  for (let i = 0; i < texts.length; i++) out += i === 0 ? texts[i]! : sep + texts[i]!;
  return om ? `${out}\n# EOF\n` : `${out}\n`;
}
