/**
 * The generated rule file: up to date with alerts/config.ts, well-formed alerts (CamelCase names with
 * the shared prefix, severities, static summary, templated description, runbook anchor that exists),
 * PromQL that parses and names only contract metrics, `up` and its own recording rules, and the
 * configured selector and thresholds really reach every expression.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig, type AlertsConfig } from '../alerts/config.js';
import { recordNames, renderRules, RULES_FILE, type AlertingRule, type RecordingRule, type RuleGroup } from '../alerts/rules.js';
import { registeredContract } from '../dashboards/contract.js';
import type { Contract } from '../dashboards/lint.js';
import { parsePromQL } from '../dashboards/promql.js';
import { dashboards } from '../dashboards/render.js';

const root = resolve(import.meta.dirname, '..');
const committedText = readFileSync(join(root, RULES_FILE), 'utf8');
const groups = (parse(committedText) as { groups: RuleGroup[] }).groups;
const rules = groups.flatMap((g) => g.rules);
const alerts = rules.filter((r): r is AlertingRule => 'alert' in r);
const records = rules.filter((r): r is RecordingRule => 'record' in r);
const runbooks = readFileSync(join(root, 'alerts/runbooks.md'), 'utf8');

let contract: Contract;
beforeAll(async () => {
  contract = await registeredContract();
});

/** `## Name` sections of runbooks.md. */
function sections(md: string): Map<string, string> {
  const out = new Map<string, string>();
  const parts = md.split(/^## /m).slice(1);
  for (const p of parts) {
    const nl = p.indexOf('\n');
    out.set(p.slice(0, nl).trim(), p.slice(nl + 1));
  }
  return out;
}

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes. */
const anchor = (heading: string): string => heading.toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-');

function baseMetric(name: string, prefix: string): string | null {
  if (!name.startsWith(prefix)) return null;
  const n = name.slice(prefix.length);
  if (contract.metrics.has(n)) return n;
  const base = n.replace(/_(bucket|sum|count)$/, '');
  return contract.metrics.get(base)?.type === 'histogram' ? base : null;
}

function checkSelectors(gs: RuleGroup[], c: AlertsConfig): string[] {
  const problems: string[] = [];
  const recorded = new Set(gs.flatMap((g) => g.rules).filter((r): r is RecordingRule => 'record' in r).map((r) => r.record));
  const selectorMatchers = parsePromQL(`up{${c.selector}}`).selectors[0].matchers;
  for (const r of gs.flatMap((g) => g.rules)) {
    const q = parsePromQL(r.expr);
    if (q.errors.length > 0) problems.push(`${'alert' in r ? r.alert : r.record}: parse errors ${q.errors.join('; ')}`);
    for (const s of q.selectors) {
      if (recorded.has(s.metric)) continue;
      if (s.metric !== 'up' && baseMetric(s.metric, c.metricPrefix) === null) {
        problems.push(`${s.metric} is neither a contract metric, up, nor a recording rule`);
        continue;
      }
      for (const m of selectorMatchers) {
        if (!s.matchers.some((x) => x.label === m.label && x.op === m.op && x.value === m.value)) problems.push(`${s.text} lacks ${m.label}${m.op}"${m.value}"`);
      }
    }
  }
  return problems;
}

describe('alerts/streamscope.rules.yml', () => {
  it('is up to date with alerts/config.ts (run `npm run alerts` if not)', () => {
    expect(committedText).toBe(renderRules(defaultConfig));
  });

  it('has every alert of the issue, each named once, CamelCase with the shared prefix', () => {
    const names = alerts.map((a) => a.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n).toMatch(/^Streamscope([A-Z][a-z0-9]+)+$/);
    expect(names.sort()).toEqual(
      [
        'StreamscopeAbnormalTerminationFastBurn',
        'StreamscopeAbnormalTerminationSlowBurn',
        'StreamscopeBufferedBytesHigh',
        'StreamscopeDanglingStreams',
        'StreamscopeFirstWriteSlow',
        'StreamscopeGuardActions',
        'StreamscopeInternalErrors',
        'StreamscopeStalledWrites',
        'StreamscopeStutter',
        'StreamscopeTargetAbsent',
        'StreamscopeZombieProducers',
      ].sort(),
    );
  });

  it('recording rules are named level:metric:operations and are unique', () => {
    const names = records.map((r) => r.record);
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n).toMatch(/^[a-z_]+:[a-z_]+:[a-z0-9_]+$/);
  });

  it('every alert has a severity, a static summary, a templated description and a runbook anchor', () => {
    const severities = new Set<string>();
    for (const a of alerts) {
      expect(['critical', 'warning', 'info']).toContain(a.labels.severity);
      severities.add(a.labels.severity);
      expect(a.annotations.summary, a.alert).not.toContain('{{');
      expect(a.annotations.summary.length, a.alert).toBeGreaterThan(10);
      expect(a.annotations.description, a.alert).toMatch(/\{\{ \$(value|labels\.\w+)[^}]*\}\}/);
      expect(a.annotations.runbook_url).toBe(`${defaultConfig.runbookUrl}#${a.alert.toLowerCase()}`);
    }
    expect([...severities].sort()).toEqual(['critical', 'info', 'warning']);
  });

  it('runbooks.md has one section per alert, at the runbook_url anchor, with meaning, impact, diagnosis and mitigation', () => {
    const secs = sections(runbooks);
    expect([...secs.keys()].sort()).toEqual(alerts.map((a) => a.alert).sort());
    for (const a of alerts) {
      expect(a.annotations.runbook_url.split('#')[1]).toBe(anchor(a.alert));
      const body = secs.get(a.alert) ?? '';
      for (const part of ['**Meaning.**', '**Impact.**', '**Diagnosis.**', '**Mitigation.**']) expect(body, `${a.alert} ${part}`).toContain(part);
    }
  });

  it('every runbook diagnosis names a dashboard panel that exists, and says where diag helps', () => {
    const titles = new Set(
      Object.values(dashboards()).flatMap((d) => (d.panels ?? []).flatMap((p) => [p.title, ...('panels' in p ? p.panels.map((x) => x.title) : [])])),
    );
    for (const [name, body] of sections(runbooks)) {
      const diagnosis = body.slice(body.indexOf('**Diagnosis.**'), body.indexOf('**Mitigation.**'));
      const named = [...diagnosis.matchAll(/\*\*([^*]+)\*\*/g)].map((m) => m[1].replace(/\s+/g, ' ')).filter((t) => t !== 'Diagnosis.');
      if (name !== 'StreamscopeTargetAbsent' && name !== 'StreamscopeAbnormalTerminationSlowBurn') {
        expect(named.length, name).toBeGreaterThan(0);
        expect(diagnosis, name).toMatch(/`diag (top|capture|analyze)/);
      }
      for (const t of named) expect(titles.has(t), `${name}: panel "${t}"`).toBe(true);
    }
  });

  it('docs/alerts.md lists every alert and every recording rule', () => {
    const doc = readFileSync(join(root, 'docs/alerts.md'), 'utf8');
    for (const a of alerts) expect(doc, a.alert).toContain(`\`${a.alert}\``);
    for (const r of records) {
      // windows may be listed together: `job:…:ratio_rate{30m,1h,…}`
      const m = /^(.*_rate)(\d+[mhd])$/.exec(r.record);
      const listed = m !== null && new RegExp(`\`${m[1].replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\{[^}]*\\b${m[2]}\\b[^}]*\\}\``).test(doc);
      expect(doc.includes(`\`${r.record}\``) || listed, r.record).toBe(true);
    }
  });

  it('every expression parses and selects only contract metrics, up and its own recording rules, through the selector', () => {
    expect(checkSelectors(groups, defaultConfig)).toEqual([]);
  });

  it('each alert reads only recording rules of its own group, defined before it (evaluated in order)', () => {
    const all = new Set(records.map((r) => r.record));
    for (const g of groups) {
      const before = new Set<string>();
      for (const r of g.rules) {
        if ('record' in r) before.add(r.record);
        else for (const s of parsePromQL(r.expr).selectors) if (all.has(s.metric)) expect(before.has(s.metric), `${r.alert} reads ${s.metric}`).toBe(true);
      }
    }
  });

  it('no group is empty and group names are unique', () => {
    for (const g of groups) expect(g.rules.length, g.name).toBeGreaterThan(0);
    expect(new Set(groups.map((g) => g.name)).size).toBe(groups.length);
  });

  it('a custom selector, metric prefix and thresholds reach every expression', () => {
    const custom: AlertsConfig = {
      ...defaultConfig,
      metricPrefix: 'myapp_',
      selector: 'job=~"api|worker", env="prod"',
      namePrefix: 'Myapp',
      bufferedBytes: { ...defaultConfig.bufferedBytes, thresholdBytes: 123456789 },
      firstWrite: { ...defaultConfig.firstWrite, p95Seconds: 7.5 },
      slo: { ...defaultConfig.slo, objective: 0.999, excludedOutcomes: [] },
    };
    const gs = (parse(renderRules(custom)) as { groups: RuleGroup[] }).groups;
    expect(checkSelectors(gs, custom)).toEqual([]);
    const text = renderRules(custom);
    expect(text).toContain('> 123456789');
    expect(text).toContain('> 7.5');
    expect(text).toContain('(1 - 0.999)');
    expect(text).not.toContain('client_aborted');
    expect(text).toContain(recordNames('myapp_').leaks);
    for (const a of gs.flatMap((g) => g.rules).filter((r): r is AlertingRule => 'alert' in r)) expect(a.alert).toMatch(/^Myapp[A-Z]/);
    // nothing of the default selector or unprefixed metric names is left
    expect(text).not.toContain('job="streamscope"');
    for (const s of gs.flatMap((g) => g.rules).flatMap((r) => parsePromQL(r.expr).selectors)) {
      if (s.metric !== 'up' && !s.metric.includes(':')) expect(s.metric.startsWith('myapp_'), s.metric).toBe(true);
    }
  });
});
