/**
 * `promtool check rules` and `promtool test rules` (Debian's prometheus package) on the generated
 * rules and the unit tests in alerts/tests/; a wrong expectation must make promtool fail; and the
 * unit tests cover every alert (fire, no-fire, target absent) and every recording rule.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultConfig, type AlertsConfig } from '../alerts/config.js';
import { renderRules, RULES_FILE, type AlertingRule, type RecordingRule, type RuleGroup } from '../alerts/rules.js';

const root = resolve(import.meta.dirname, '..');
const PROMTOOL = process.env.PROMTOOL ?? '/usr/bin/promtool';
const TESTS_DIR = join(root, 'alerts/tests');
const testFiles = readdirSync(TESTS_DIR).filter((f) => f.endsWith('.test.yml')).sort();
const tmp = mkdtempSync(join(tmpdir(), 'streamscope-promtool-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function promtool(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(PROMTOOL, args, { cwd: root, encoding: 'utf8', timeout: 50_000 });
  if (r.error) throw new Error(`cannot run ${PROMTOOL} (Debian package prometheus): ${r.error.message}`);
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

const rules = (parse(readFileSync(join(root, RULES_FILE), 'utf8')) as { groups: RuleGroup[] }).groups.flatMap((g) => g.rules);
const alertNames = rules.filter((r): r is AlertingRule => 'alert' in r).map((r) => r.alert);
const recordNames = rules.filter((r): r is RecordingRule => 'record' in r).map((r) => r.record);

interface UnitTest {
  name: string;
  input_series: Array<{ series: string; values: string }>;
  alert_rule_test?: Array<{ eval_time: string; alertname: string; exp_alerts: unknown[] }>;
  promql_expr_test?: Array<{ expr: string }>;
}
const unitTests: UnitTest[] = testFiles.flatMap((f) => (parse(readFileSync(join(TESTS_DIR, f), 'utf8')) as { tests: UnitTest[] }).tests);

describe('promtool', () => {
  it('check rules accepts the generated rule file', () => {
    const r = promtool('check', 'rules', RULES_FILE);
    expect(r.out).toContain('SUCCESS');
    expect(r.code, r.out).toBe(0);
  });

  it.each(testFiles)('test rules alerts/tests/%s passes', (file) => {
    const r = promtool('test', 'rules', join('alerts/tests', file));
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('SUCCESS');
  });

  it('test rules fails when an expectation is wrong (the harness can fail)', () => {
    const doc = parse(readFileSync(join(TESTS_DIR, 'stalled-buffered.test.yml'), 'utf8')) as { rule_files: string[]; tests: UnitTest[] };
    doc.rule_files = [join(root, RULES_FILE)];
    const fire = doc.tests[0].alert_rule_test?.find((t) => t.exp_alerts.length > 0);
    expect(fire).toBeDefined();
    (fire!.exp_alerts[0] as { exp_labels: Record<string, string> }).exp_labels.route = '/tokens';
    const file = join(tmp, 'wrong.test.yml');
    writeFileSync(file, stringify(doc));
    const r = promtool('test', 'rules', file);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('FAILED');
  });

  it('check rules accepts rules generated from a custom config (regex selector, prefix, no exclusions)', () => {
    const custom: AlertsConfig = { ...defaultConfig, metricPrefix: 'myapp_', selector: 'job=~"api|worker"', slo: { ...defaultConfig.slo, excludedOutcomes: [] } };
    const file = join(tmp, 'custom.rules.yml');
    writeFileSync(file, renderRules(custom));
    const r = promtool('check', 'rules', file);
    expect(r.code, r.out).toBe(0);
  });

  it('with a regex selector, TargetAbsent fires without a job label and says which selector', () => {
    const custom: AlertsConfig = { ...defaultConfig, selector: 'job=~"api|worker"' };
    writeFileSync(join(tmp, 'regex.rules.yml'), renderRules(custom));
    const test = {
      rule_files: ['regex.rules.yml'],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: [{ series: 'up{job="other", instance="x:1"}', values: '1x10' }],
          alert_rule_test: [
            {
              eval_time: '10m',
              alertname: 'StreamscopeTargetAbsent',
              exp_alerts: [
                {
                  exp_labels: { severity: 'warning' },
                  exp_annotations: {
                    summary: 'No streamscope target is being scraped.',
                    description:
                      'The jobs matching {job=~"api|worker"} have had no target up for 5m (down, or gone from the scrape configuration): streamscope metrics are missing and every other streamscope alert is blind.',
                    runbook_url: `${defaultConfig.runbookUrl}#streamscopetargetabsent`,
                  },
                },
              ],
            },
          ],
        },
      ],
    };
    writeFileSync(join(tmp, 'regex.test.yml'), stringify(test));
    const r = promtool('test', 'rules', join(tmp, 'regex.test.yml'));
    expect(r.code, r.out).toBe(0);
  });
});

describe('unit-test coverage', () => {
  /** A test case has the target when some input series carries the default selector's job. */
  const hasTarget = (t: UnitTest): boolean => t.input_series.some((s) => s.series.includes('job="streamscope"'));
  const cases = (alert: string) =>
    unitTests.flatMap((t) => (t.alert_rule_test ?? []).filter((a) => a.alertname === alert).map((a) => ({ t, a })));

  it.each(alertNames)('%s has a fire, a no-fire and a target-absent case', (alert) => {
    const all = cases(alert);
    const fire = all.filter(({ t, a }) => a.exp_alerts.length > 0 && hasTarget(t));
    const noFire = all.filter(({ t, a }) => a.exp_alerts.length === 0 && hasTarget(t));
    const absent = all.filter(({ t }) => !hasTarget(t));
    if (alert === 'StreamscopeTargetAbsent') {
      expect(absent.some(({ a }) => a.exp_alerts.length > 0), 'fires when the target is absent').toBe(true);
      expect(noFire.length).toBeGreaterThan(0);
      // and fires when the target is there but down
      expect(fire.length).toBeGreaterThan(0);
    } else {
      expect(fire.length, 'fire case').toBeGreaterThan(0);
      expect(noFire.length, 'no-fire case').toBeGreaterThan(0);
      expect(absent.filter(({ a }) => a.exp_alerts.length === 0).length, 'silent when the target is absent').toBeGreaterThan(0);
    }
  });

  it.each(recordNames)('recording rule %s has a promql_expr_test', (record) => {
    const tested = unitTests.some((t) => (t.promql_expr_test ?? []).some((p) => p.expr.includes(record)));
    expect(tested).toBe(true);
  });
});
