/**
 * A dashboard linter modelled on Grafana's dashboard-linter (github.com/grafana/dashboard-linter),
 * with the rule names it uses, plus the checks of the metric contract. Pure: returns problems.
 *
 * Rules: template-datasource, template-job, template-instance (and route), template-on-time-change-reload,
 * template-label-promql, panel-datasource, panel-title-description, panel-units, panel-no-targets,
 * target-promql, target-rate-interval, target-job, target-instance, target-route, target-counter-agg,
 * target-histogram-le, target-grouping-label, target-contract-metric, uneditable, dashboard-uid, dashboard-schema-version.
 */
import { parseLabelValues, parsePromQL, type SelectorInfo } from './promql.js';

/** The metric contract: name → type and label names. */
export interface Contract {
  metrics: Map<string, { type: 'counter' | 'gauge' | 'histogram' | 'summary'; labels: string[] }>;
  /** Names of recording rules the dashboards may use. */
  recorded?: Set<string>;
}

export interface Problem {
  rule: string;
  where: string;
  message: string;
}

/** Grafana unit ids (grafana-data valueFormats categories) that these dashboards may use. */
export const VALID_UNITS = new Set([
  'none', 'short', 'percent', 'percentunit', 'sci', 'locale',
  'bytes', 'decbytes', 'bits', 'decbits', 'kbytes', 'mbytes', 'gbytes',
  'Bps', 'binBps', 'bps', 'binbps', 'KiBs', 'MiBs', 'GiBs', 'KBs', 'MBs', 'GBs', 'pps',
  'ns', 'µs', 'ms', 's', 'm', 'h', 'd', 'dtdurationms', 'dtdurations', 'clockms', 'clocks', 'hertz',
  'cps', 'ops', 'reqps', 'rps', 'wps', 'iops', 'cpm', 'opm', 'rpm', 'wpm',
  'bool', 'bool_yes_no', 'bool_on_off',
]);

const QUERY_PANELS = new Set(['timeseries', 'table', 'stat', 'gauge', 'bargauge', 'heatmap', 'barchart', 'piechart', 'graph', 'singlestat']);
const DS_VAR = new Set(['${datasource}', '$datasource']);
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'] as const;

type Json = Record<string, any>;

/** The contract metric a series name belongs to, with the suffix of histogram series. */
function resolveMetric(contract: Contract, name: string): { base: string; suffix: string } | null {
  if (contract.metrics.has(name)) return { base: name, suffix: '' };
  for (const s of HISTOGRAM_SUFFIXES) {
    if (name.endsWith(s)) {
      const base = name.slice(0, -s.length);
      const m = contract.metrics.get(base);
      if (m !== undefined && (m.type === 'histogram' || m.type === 'summary')) return { base, suffix: s };
    }
  }
  return null;
}

function isCounterSeries(contract: Contract, name: string): boolean {
  const r = resolveMetric(contract, name);
  if (r === null) return false;
  const type = contract.metrics.get(r.base)?.type;
  return type === 'counter' || (r.suffix !== '' && r.suffix !== undefined);
}

function hasMatcher(sel: SelectorInfo, label: string): boolean {
  return sel.matchers.some((m) => m.label === label && m.op === '=~' && m.value === `$${label}`);
}

export function lintDashboard(d: Json, contract: Contract): Problem[] {
  const problems: Problem[] = [];
  const title = String(d.title ?? '(untitled)');
  const add = (rule: string, where: string, message: string): void => {
    problems.push({ rule, where: `${title}${where === '' ? '' : ` / ${where}`}`, message });
  };

  // --- dashboard ---------------------------------------------------------------------------------
  if (typeof d.uid !== 'string' || !/^[a-z0-9][a-z0-9-]{6,38}[a-z0-9]$/.test(d.uid)) add('dashboard-uid', '', `uid must be a stable 8-40 character slug, is ${JSON.stringify(d.uid)}`);
  if (typeof d.schemaVersion !== 'number') add('dashboard-schema-version', '', 'schemaVersion must be set explicitly');
  if (d.editable !== false) add('uneditable', '', 'dashboard should not be editable (edit the TypeScript source instead)');
  if (typeof d.description !== 'string' || d.description === '') add('panel-title-description', '', 'dashboard has no description');

  // --- templating --------------------------------------------------------------------------------
  const vars: Json[] = d.templating?.list ?? [];
  const dsVars = vars.filter((v) => v.type === 'datasource');
  if (dsVars.length !== 1) add('template-datasource', '', `expected exactly one datasource variable, found ${dsVars.length}`);
  for (const v of dsVars) {
    if (v.name !== 'datasource') add('template-datasource', '', `datasource variable is named '${v.name}', should be 'datasource'`);
    if (v.label !== 'Data source') add('template-datasource', '', `datasource variable is labeled '${v.label}', should be 'Data source'`);
    if (v.query !== 'prometheus') add('template-datasource', '', `datasource variable query is '${v.query}', should be 'prometheus'`);
  }
  for (const [name, label] of [['job', 'Job'], ['instance', 'Instance'], ['route', 'Route']] as const) {
    const v = vars.find((x) => x.name === name);
    const rule = `template-${name}`;
    if (v === undefined) {
      add(rule, '', `is missing the ${name} variable`);
      continue;
    }
    if (v.type !== 'query') add(rule, name, `should be a Prometheus query variable, is '${v.type}'`);
    if (!DS_VAR.has(v.datasource?.uid)) add(rule, name, `should use datasource '\${datasource}', uses '${v.datasource?.uid}'`);
    if (v.label !== label) add(rule, name, `should be labeled '${label}', is '${v.label}'`);
    if (v.multi !== true) add(rule, name, 'should be multi-select');
    if (v.includeAll !== true || v.allValue !== '.+') add(rule, name, `should include All with allValue '.+', has '${v.allValue}'`);
    if (v.refresh !== 2) add('template-on-time-change-reload', name, `should refresh on time range change (2), is ${v.refresh}`);
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    const lv = typeof q === 'string' ? parseLabelValues(q) : null;
    if (lv === null) add('template-label-promql', name, `query is not label_values(<selector>, <label>): ${JSON.stringify(q)}`);
    else {
      const parsed = parsePromQL(lv.selector);
      if (parsed.errors.length > 0) add('template-label-promql', name, `selector does not parse: ${parsed.errors.join('; ')}`);
      for (const s of parsed.selectors) if (resolveMetric(contract, s.metric) === null) add('target-contract-metric', name, `unknown metric ${s.metric}`);
    }
  }

  // --- panels ------------------------------------------------------------------------------------
  const panels: Json[] = [];
  for (const p of d.panels ?? []) {
    if (p.type === 'row') panels.push(...(p.panels ?? []));
    else panels.push(p);
  }
  const ids = new Set<number>();
  for (const p of d.panels ?? []) {
    if (typeof p.id !== 'number' || ids.has(p.id)) add('dashboard-uid', String(p.title), `panel id ${p.id} is missing or not unique`);
    ids.add(p.id);
  }
  for (const p of panels) {
    const where = String(p.title ?? `panel ${p.id}`);
    if (typeof p.title !== 'string' || p.title === '') add('panel-title-description', where, 'panel has no title');
    if (typeof p.description !== 'string' || p.description === '') add('panel-title-description', where, 'panel has no description');
    if (!QUERY_PANELS.has(p.type)) continue;
    if (!DS_VAR.has(p.datasource?.uid)) add('panel-datasource', where, `panel datasource should be '\${datasource}', is '${p.datasource?.uid}'`);
    const unit = p.fieldConfig?.defaults?.unit;
    if (typeof unit !== 'string' || !VALID_UNITS.has(unit)) add('panel-units', where, `no or invalid unit: '${unit}'`);
    for (const o of p.fieldConfig?.overrides ?? []) {
      for (const prop of o.properties ?? []) {
        if (prop.id === 'unit' && !VALID_UNITS.has(prop.value)) add('panel-units', where, `invalid unit override '${prop.value}'`);
      }
    }
    const targets: Json[] = p.targets ?? [];
    if (targets.length === 0) add('panel-no-targets', where, 'panel has no targets');
    for (const t of targets) lintTarget(t, `${where} [${t.refId}]`, contract, add);
  }
  return problems;
}

function lintTarget(t: Json, where: string, contract: Contract, add: (rule: string, where: string, message: string) => void): void {
  if (t.datasource !== undefined && !DS_VAR.has(t.datasource?.uid)) add('panel-datasource', where, `target datasource should be '\${datasource}', is '${t.datasource?.uid}'`);
  if (typeof t.expr !== 'string' || t.expr.trim() === '') {
    add('target-promql', where, 'empty query');
    return;
  }
  const q = parsePromQL(t.expr);
  if (q.errors.length > 0) {
    add('target-promql', where, `does not parse: ${q.errors.join('; ')} in ${t.expr}`);
    return;
  }
  if (q.selectors.length === 0) add('target-promql', where, 'query selects no series');
  for (const s of q.selectors) {
    const metric = resolveMetric(contract, s.metric);
    const recorded = contract.recorded?.has(s.metric) === true;
    if (metric === null && !recorded) {
      add('target-contract-metric', where, `${s.metric} is not a metric of the contract`);
      continue;
    }
    for (const label of ['job', 'instance']) if (!hasMatcher(s, label)) add(`target-${label}`, where, `${s.text} lacks ${label}=~"$${label}"`);
    const labels = metric === null ? [] : (contract.metrics.get(metric.base)?.labels ?? []);
    if (labels.includes('route') && !hasMatcher(s, 'route')) add('target-route', where, `${s.text} lacks route=~"$route"`);
    for (const m of s.matchers) {
      const known = ['job', 'instance', ...labels, ...(metric?.suffix === '_bucket' ? ['le'] : [])];
      if (metric !== null && !known.includes(m.label)) add('target-contract-metric', where, `${s.metric} has no label '${m.label}'`);
    }
    if (s.range !== null) {
      const ok = s.range === '1111s' || (s.rangeFunction === 'increase' && s.range === '2222s');
      if (!ok) add('target-rate-interval', where, `${s.rangeFunction ?? 'range'}(${s.text}[${s.range}]) should use $__rate_interval`);
    }
    const counter = isCounterSeries(contract, s.metric);
    const aggregated = s.range !== null && ['rate', 'irate', 'increase'].includes(s.rangeFunction ?? '');
    if (counter && !aggregated) add('target-counter-agg', where, `counter ${s.text} must be inside rate(), irate() or increase()`);
    if (!counter && metric !== null && s.range !== null && ['rate', 'irate', 'increase'].includes(s.rangeFunction ?? '')) {
      add('target-counter-agg', where, `gauge ${s.text} must not be inside ${s.rangeFunction}()`);
    }
  }
  for (const g of q.quantileGroupings) if (!g.includes('le')) add('target-histogram-le', where, 'histogram_quantile over an aggregation that drops le');
  const allowed = new Set(['job', 'instance', 'le']);
  for (const s of q.selectors) {
    const metric = resolveMetric(contract, s.metric);
    for (const l of metric === null ? [] : (contract.metrics.get(metric.base)?.labels ?? [])) allowed.add(l);
  }
  for (const g of q.groupings) {
    for (const l of g) if (!allowed.has(l)) add('target-grouping-label', where, `groups by '${l}', which none of its metrics has`);
  }
}
