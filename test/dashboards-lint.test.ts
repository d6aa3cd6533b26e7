/**
 * Dashboard lint, modelled on Grafana's dashboard-linter, over the committed JSON (both flavours):
 * datasource variable, job/instance/route matchers, $__rate_interval, counters only inside
 * rate/increase, units, titles, descriptions, stable uids, explicit schemaVersion; every query parses
 * as PromQL with lezer-promql and names only metrics of the contract. Mutation cases prove that each
 * lint rule fires on a dashboard that breaks it.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION } from '../dashboards/board.js';
import { DESIGN_METRICS, registeredContract } from '../dashboards/contract.js';
import { lintDashboard, type Contract } from '../dashboards/lint.js';
import { parsePromQL } from '../dashboards/promql.js';
import { IMPORT_DIR, PROVISIONING_DIR } from '../dashboards/render.js';

const root = resolve(import.meta.dirname, '..');
const NAMES = ['streamscope-overview', 'streamscope-routes'];
type Json = Record<string, any>;

const load = (dir: string, name: string): Json => JSON.parse(readFileSync(join(root, dir, `${name}.json`), 'utf8')) as Json;
const committed = NAMES.flatMap((name) => [
  { name, flavour: 'provisioning', d: load(PROVISIONING_DIR, name) },
  { name, flavour: 'import', d: load(IMPORT_DIR, name) },
]);

function panelsOf(d: Json): Json[] {
  return (d.panels as Json[]).flatMap((p) => (p.type === 'row' ? (p.panels ?? []) : [p]));
}
function exprsOf(d: Json): string[] {
  return panelsOf(d).flatMap((p) => ((p.targets ?? []) as Json[]).map((t) => t.expr as string));
}

let contract: Contract;
beforeAll(async () => {
  contract = await registeredContract();
});

describe('the metric contract', () => {
  it('the metrics streamscope registers are exactly the table of DESIGN.md', () => {
    const registered = Object.fromEntries([...contract.metrics].map(([n, m]) => [n, { type: m.type, labels: [...m.labels].sort() }]));
    const design = Object.fromEntries(Object.entries(DESIGN_METRICS).map(([n, m]) => [n, { type: m.type, labels: [...m.labels].sort() }]));
    expect(registered).toEqual(design);
  });
});

describe.each(committed)('$name ($flavour)', ({ d }) => {
  it('passes every lint rule', () => {
    expect(lintDashboard(d, contract)).toEqual([]);
  });

  it('every query parses as PromQL with no error node', () => {
    const exprs = exprsOf(d);
    expect(exprs.length).toBeGreaterThan(10);
    for (const e of exprs) expect(parsePromQL(e).errors, e).toEqual([]);
  });

  it('has a stable uid, an explicit schemaVersion, unique panel ids and a layout without overlaps', () => {
    expect(NAMES).toContain(d.uid);
    expect(d.schemaVersion).toBe(SCHEMA_VERSION);
    const cells = new Set<string>();
    for (const p of d.panels as Json[]) {
      const { x, y, w, h } = p.gridPos as { x: number; y: number; w: number; h: number };
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          expect(cells.has(`${i},${j}`), `${p.title} overlaps at ${i},${j}`).toBe(false);
          cells.add(`${i},${j}`);
        }
      }
    }
  });
});

describe('coverage of the contract', () => {
  const metricsIn = (d: Json): Set<string> => {
    const out = new Set<string>();
    for (const e of exprsOf(d)) for (const s of parsePromQL(e).selectors) out.add(s.metric.replace(/_(bucket|sum|count)$/, ''));
    return out;
  };

  it('Streams overview shows every metric of the contract', () => {
    const used = metricsIn(load(PROVISIONING_DIR, 'streamscope-overview'));
    expect([...contract.metrics.keys()].filter((m) => !used.has(m))).toEqual([]);
  });

  it('Stream health by route shows every metric that has a route label, split by route', () => {
    const d = load(PROVISIONING_DIR, 'streamscope-routes');
    const used = metricsIn(d);
    const routed = [...contract.metrics].filter(([, m]) => m.labels.includes('route')).map(([n]) => n);
    expect(routed.filter((m) => !used.has(m))).toEqual([]);
    // every query keeps the route apart
    for (const e of exprsOf(d)) {
      const q = parsePromQL(e);
      expect(q.groupings.length, e).toBeGreaterThan(0);
      for (const g of q.groupings) expect(g, e).toContain('route');
    }
  });

  it('ranks the slowest and the leakiest routes first', () => {
    const tables = panelsOf(load(PROVISIONING_DIR, 'streamscope-routes')).filter((p) => p.type === 'table');
    const sorts = tables.map((t) => [t.title, t.options.sortBy]);
    expect(sorts).toEqual([
      ['Slowest routes', [{ displayName: 'p95 duration', desc: true }]],
      ['Leakiest routes', [{ displayName: 'leak findings', desc: true }]],
    ]);
  });
});

describe('flavours', () => {
  it('provisioning files have no __inputs and no ${DS_*} placeholder', () => {
    for (const name of NAMES) {
      const text = readFileSync(join(root, PROVISIONING_DIR, `${name}.json`), 'utf8');
      expect(text).not.toContain('__inputs');
      expect(text).not.toContain('__requires');
      expect(text).not.toMatch(/\$\{DS_/);
    }
  });

  it('import files declare every ${DS_*} they use, use every input they declare, and require each panel type', () => {
    for (const name of NAMES) {
      const d = load(IMPORT_DIR, name);
      const text = JSON.stringify(d);
      const used = new Set([...text.matchAll(/\$\{(DS_[A-Z0-9_]+)\}/g)].map((m) => m[1]));
      const declared = new Set((d.__inputs as Json[]).map((i) => i.name as string));
      expect(used).toEqual(declared);
      for (const i of d.__inputs as Json[]) expect(i).toMatchObject({ type: 'datasource', pluginId: 'prometheus' });
      const requires = (d.__requires as Json[]).map((r) => `${r.type}:${r.id}`);
      const panelTypes = new Set(panelsOf(d).map((p) => `panel:${p.type}`));
      expect(requires).toEqual(expect.arrayContaining(['grafana:grafana', 'datasource:prometheus', ...panelTypes]));
      expect(d.id).toBeNull();
    }
  });

  it('the import flavour is the provisioning flavour plus inputs and the datasource default', () => {
    for (const name of NAMES) {
      const imp = load(IMPORT_DIR, name);
      const prov = load(PROVISIONING_DIR, name);
      const { __inputs, __elements, __requires, id, ...rest } = imp;
      expect(__inputs && __elements && __requires).toBeTruthy();
      expect(id).toBeNull();
      const ds = (rest.templating.list as Json[]).find((v) => v.type === 'datasource') as Json;
      expect(ds.current).toEqual({ selected: false, text: '${DS_PROMETHEUS}', value: '${DS_PROMETHEUS}' });
      delete ds.current;
      expect(rest).toEqual(prov);
    }
  });
});

describe('docs/dashboards.md', () => {
  it('describes every panel of both dashboards, and both uids', () => {
    const doc = readFileSync(join(root, 'docs/dashboards.md'), 'utf8');
    for (const name of NAMES) {
      expect(doc).toContain(`\`${name}\``);
      for (const p of panelsOf(load(PROVISIONING_DIR, name))) expect(doc, p.title).toContain(`**${p.title}**`);
    }
  });
});

describe('the linter catches each rule it checks', () => {
  const base = (): Json => structuredClone(load(PROVISIONING_DIR, 'streamscope-overview'));
  const firstTs = (d: Json): Json => panelsOf(d).find((p) => p.type === 'timeseries') as Json;
  const S = 'job=~"$job", instance=~"$instance", route=~"$route"';
  const withExpr = (expr: string) => (d: Json) => {
    firstTs(d).targets[0].expr = expr;
  };

  const cases: Array<[string, (d: Json) => void]> = [
    ['panel-units', (d) => delete firstTs(d).fieldConfig.defaults.unit],
    ['panel-units', (d) => (firstTs(d).fieldConfig.defaults.unit = 'furlongs')],
    ['panel-title-description', (d) => delete firstTs(d).description],
    ['panel-title-description', (d) => (firstTs(d).title = '')],
    ['panel-datasource', (d) => (firstTs(d).datasource = { type: 'prometheus', uid: 'my-prometheus' })],
    ['panel-no-targets', (d) => (firstTs(d).targets = [])],
    ['target-rate-interval', withExpr(`sum(rate(stream_started_total{${S}}[5m]))`)],
    ['target-counter-agg', withExpr(`sum(stream_started_total{${S}})`)],
    ['target-counter-agg', withExpr(`sum(stream_duration_seconds_count{${S}})`)],
    ['target-counter-agg', withExpr(`sum(rate(stream_active_connections{${S}}[$__rate_interval]))`)],
    ['target-job', withExpr(`sum(rate(stream_started_total{instance=~"$instance", route=~"$route"}[$__rate_interval]))`)],
    ['target-instance', withExpr(`sum(rate(stream_started_total{job=~"$job", route=~"$route"}[$__rate_interval]))`)],
    ['target-route', withExpr(`sum(rate(stream_started_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))`)],
    ['target-contract-metric', withExpr(`sum(rate(stream_opened_total{${S}}[$__rate_interval]))`)],
    ['target-contract-metric', withExpr(`sum(rate(stream_started_total{${S}, status="200"}[$__rate_interval]))`)],
    ['target-promql', withExpr(`sum(rate(stream_started_total{${S}}[$__rate_interval])`)],
    ['target-histogram-le', withExpr(`histogram_quantile(0.95, sum by (route) (rate(stream_duration_seconds_bucket{${S}}[$__rate_interval])))`)],
    ['target-grouping-label', withExpr(`sum by (pod) (rate(stream_started_total{${S}}[$__rate_interval]))`)],
    ['template-datasource', (d) => (d.templating.list = (d.templating.list as Json[]).filter((v) => v.type !== 'datasource'))],
    ['template-job', (d) => ((d.templating.list as Json[]).find((v) => v.name === 'job')!.allValue = '')],
    ['template-instance', (d) => (d.templating.list = (d.templating.list as Json[]).filter((v) => v.name !== 'instance'))],
    ['template-route', (d) => ((d.templating.list as Json[]).find((v) => v.name === 'route')!.multi = false)],
    ['template-on-time-change-reload', (d) => ((d.templating.list as Json[]).find((v) => v.name === 'route')!.refresh = 1)],
    ['template-label-promql', (d) => ((d.templating.list as Json[]).find((v) => v.name === 'job')!.query = 'label_values(stream_started_total{, job)')],
    ['uneditable', (d) => (d.editable = true)],
    ['dashboard-schema-version', (d) => delete d.schemaVersion],
    ['dashboard-uid', (d) => (d.uid = 'Streamscope Overview!')],
  ];

  it.each(cases)('%s', (rule, mutate) => {
    const d = base();
    expect(lintDashboard(d, contract)).toEqual([]);
    mutate(d);
    expect(lintDashboard(d, contract).map((p) => p.rule)).toContain(rule);
  });
});
