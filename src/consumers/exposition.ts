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

/**
 * A cached piece's bytes, in a memory of its own: Buffer.from() would cut small ones from a shared 8 KiB pool, and
 * one cached piece still alive would keep its whole pool slab (most pieces are 1–2 KB and are replaced as their
 * series change).
 */
function encode(text: string): Buffer {
  const buf = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  buf.write(text);
  return buf;
}

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
export interface AnyMetric {
  name: string;
  type: string;
  get(): Promise<MetricData> | MetricData;
}
/** The registry methods the fast path needs (prom-client 14, 15, @prometheus-io/client). */
export interface ClientRegistry {
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
   * Histogram child → its lines as of its last render, encoded, and the state they show (the histogram's reset
   * epoch, the child's count: every observation raises it). Most children do not change between two scrapes (a
   * route's histograms move when its streams open or close), so most of a scrape is cached bytes: a scrape's text
   * is never one string to flatten and encode again (that was 60 % of an unchanged scrape's CPU with 200 routes).
   */
  private readonly blocks = new WeakMap<HistogramChild, { epoch: number; count: number; buf: Buffer }>();
  /** Histogram → its `# HELP`/`# TYPE` lines, encoded, and the name and help they show. */
  private readonly heads = new WeakMap<StreamHistogram, { name: string; help: string; buf: Buffer }>();
  /**
   * Counter or gauge → its text as of its last render, encoded, and the samples it shows (each sample's label
   * object, value and name). A family whose get() gives the same samples as last time is its cached bytes.
   */
  private readonly families = new WeakMap<object, { name: string; help: string; type: string; labels: unknown[]; values: number[]; names: unknown[]; buf: Buffer }>();

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

  /**
   * A get() answer's text, encoded (undefined where the client's would differ): the family's cached bytes when its
   * samples are those of its last render (same label objects, values and names, in the same order).
   */
  dataBuf(m: object, d: MetricData, count: { rendered: number }): Buffer | undefined {
    const vals = d.values ?? [];
    const known = this.families.get(m);
    if (known !== undefined && known.name === d.name && known.help === d.help && known.type === d.type && known.values.length === vals.length) {
      let same = true;
      for (let i = 0; i < vals.length; i++) {
        const v = vals[i]!;
        if (v.labels !== known.labels[i] || !Object.is(v.value, known.values[i]) || v.metricName !== known.names[i] || v.sharedLabels !== undefined || (v.exemplar && this.om)) {
          same = false;
          break;
        }
      }
      if (same) return known.buf;
    }
    const text = this.data(d);
    if (text === undefined) return undefined;
    const buf = encode(text);
    count.rendered++;
    this.families.set(m, { name: d.name, help: d.help, type: d.type, labels: vals.map((v) => v.labels), values: vals.map((v) => v.value), names: vals.map((v) => v.metricName), buf });
    return buf;
  }

  /**
   * A StreamHistogram's text, the same as the client gives for its get() (`le` first, then the child's labels),
   * as encoded pieces pushed onto `out`: its head, then one per child, each cached until the child changes.
   */
  histogram(h: StreamHistogram, out: Buffer[]): void {
    let head = this.heads.get(h);
    if (head === undefined || head.name !== h.name || head.help !== h.help) {
      const name = this.esc.str(h.name);
      head = { name: h.name, help: h.help, buf: encode(`# HELP ${name} ${this.esc.str(h.help)}\n# TYPE ${name} ${h.type}`) };
      this.heads.set(h, head);
    }
    out.push(head.buf);
    let pre: string[] | undefined;
    for (const c of h.childList()) {
      const block = this.blocks.get(c);
      if (block !== undefined && block.epoch === h.epoch && block.count === c.count) {
        out.push(block.buf);
        continue;
      }
      pre ??= this.prefixesOf(h);
      const buf = encode(this.childText(h, c, pre));
      expositionStats.rendered++;
      this.blocks.set(c, { epoch: h.epoch, count: c.count, buf });
      out.push(buf);
    }
  }

  /** Renders a histogram child's lines now if its cached ones are stale (the pre-render's unit of work): rendered? */
  warmChild(h: StreamHistogram, c: HistogramChild): boolean {
    const block = this.blocks.get(c);
    if (block !== undefined && block.epoch === h.epoch && block.count === c.count) return false;
    this.blocks.set(c, { epoch: h.epoch, count: c.count, buf: encode(this.childText(h, c, this.prefixesOf(h))) });
    return true;
  }

  /** A histogram's `name_bucket{le="…"` prefixes, one per bound and +Inf. */
  private prefixesOf(h: StreamHistogram): string[] {
    let pre = this.prefixes.get(h);
    if (pre === undefined) {
      pre = [...h.upperBounds.map((b) => `\n${h.name}_bucket{le="${b}"`), `\n${h.name}_bucket{le="+Inf"`];
      this.prefixes.set(h, pre);
    }
    return pre;
  }

  /** One histogram child's lines. */
  private childText(h: StreamHistogram, c: HistogramChild, pre: string[]): string {
    const n = h.upperBounds.length;
    const inner = this.childLabels(c);
    const tail = inner === '' ? '} ' : `,${inner}} `;
    const bare = inner === '' ? ' ' : `{${inner}} `;
    const parts: string[] = [];
    let acc = 0;
    for (let i = 0; i < n; i++) {
      acc += c.counts[i] as number;
      parts.push(pre[i]!, tail, valueText(acc));
    }
    parts.push(pre[n]!, tail, valueText(c.count), `\n${h.name}_sum`, bare, valueText(c.sum), `\n${h.name}_count`, bare, valueText(c.count));
    return parts.join('');
  }
}

/** The client's per-metric formatter of a registry, when its `metrics()` is the client's own (not overridden). */
export function perMetricOf(registry: ClientRegistry): PerMetric | undefined {
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
export function contextFor(registry: ClientRegistry, per: PerMetric): Context | null | Promise<Context | null> {
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

/**
 * How many scrapes took the fast path, and how many histogram children and counter or gauge families they rendered
 * (rather than served from cache): a test reads them, counted rather than timed.
 */
export const expositionStats = { fast: 0, fallback: 0, rendered: 0 };

const SEP_TEXT = Buffer.from('\n\n');
const SEP_OM = Buffer.from('\n');
const END_TEXT = Buffer.from('\n');
const END_OM = Buffer.from('\n# EOF\n');

/**
 * The registry's text as its `metrics()` gives it, encoded (UTF-8, as the response would encode the string),
 * streamscope's families rendered here from cached bytes; undefined when the fast path does not apply (then the
 * caller asks `registry.metrics()`). One Buffer: the response writes it as it is.
 */
export async function fastMetrics(registry: object): Promise<Buffer | undefined> {
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
  // metrics()'s own loop: every metric's get() starts in this one synchronous pass, in registry order; each
  // metric's text is one or more encoded pieces (a histogram's: its head and one per child)
  const parts: Array<Buffer | Buffer[] | Promise<Buffer>> = [];
  for (const m of r.getMetricsAsArray()) {
    if (om && m.type === 'counter') m.name = m.name.replace(/_total$/, '');
    if (!owned.has(m)) parts.push(per.call(r, m).then((t) => Buffer.from(t)));
    else if (m instanceof StreamHistogram) {
      const pieces: Buffer[] = [];
      c.histogram(m, pieces);
      parts.push(pieces);
    } else {
      const got = m.get();
      parts.push(Promise.resolve(got).then(async (d) => c.dataBuf(m, d, expositionStats) ?? Buffer.from(await per.call(r, m))));
    }
  }
  const texts = await Promise.all(parts);
  expositionStats.fast++;
  const sep = om ? SEP_OM : SEP_TEXT;
  const list: Buffer[] = [];
  let length = 0;
  for (let i = 0; i < texts.length; i++) {
    if (i > 0) {
      list.push(sep);
      length += sep.length;
    }
    const t = texts[i]!;
    if (Array.isArray(t)) {
      for (const b of t) {
        list.push(b);
        length += b.length;
      }
    } else {
      list.push(t);
      length += t.length;
    }
  }
  const end = om ? END_OM : END_TEXT;
  list.push(end);
  return Buffer.concat(list, length + end.length);
}
