/**
 * Prometheus recording and alerting rules for streamscope, built from an AlertsConfig.
 * Pure: renderRules(config) returns the YAML text; alerts/build.ts writes it.
 */
import { stringify } from 'yaml';
import type { AlertsConfig, Duration, Severity, SloWindowPair } from './config.js';

export interface RecordingRule {
  record: string;
  expr: string;
}

export interface AlertingRule {
  alert: string;
  expr: string;
  for: Duration;
  labels: { severity: Severity };
  annotations: { summary: string; description: string; runbook_url: string };
}

export interface RuleGroup {
  name: string;
  rules: Array<RecordingRule | AlertingRule>;
}

/** Window of the leak and internal-error increases (fixed: it is part of the recorded names). */
export const INCREASE_WINDOW = '15m';

/** Names of the recording rules, for a metric prefix. */
export function recordNames(prefix = '') {
  return {
    sloBad: `job:${prefix}stream_slo_bad:rate5m`,
    sloValid: `job:${prefix}stream_slo_valid:rate5m`,
    serverFaultRatio: (w: string) => `job:${prefix}stream_server_fault:ratio_rate${w}`,
    firstWriteP95: `job_route:${prefix}stream_first_write_seconds:p95_rate5m`,
    firstWriteRate: `job_route:${prefix}stream_first_write_seconds_count:rate5m`,
    longestGapP95: `job_route:${prefix}stream_longest_write_gap_seconds:p95_rate5m`,
    longestGapP50: `job_route:${prefix}stream_longest_write_gap_seconds:p50_rate5m`,
    longestGapRate: `job_route:${prefix}stream_longest_write_gap_seconds_count:rate5m`,
    leaks: `instance_route_kind:${prefix}stream_leaks_total:increase${INCREASE_WINDOW}`,
    internalErrors: `instance_component:${prefix}streamscope_internal_errors_total:increase${INCREASE_WINDOW}`,
    guardActions: `instance_route_guard:${prefix}stream_guard_actions_total:increase${INCREASE_WINDOW}`,
  };
}

const re = (values: string[]): string => values.join('|');

/** Bytes, in binary units, for text: 67108864 → "64 MiB". */
function bytesText(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

export function ruleGroups(c: AlertsConfig): RuleGroup[] {
  const m = (name: string): string => c.metricPrefix + name;
  const sel = (metric: string, extra = ''): string => {
    const parts = [c.selector, extra].filter((s) => s !== '');
    return `${m(metric)}{${parts.join(', ')}}`;
  };
  const names = recordNames(c.metricPrefix);
  const runbook = (alert: string): string => `${c.runbookUrl}#${alert.toLowerCase()}`;
  const name = (suffix: string): string => c.namePrefix + suffix;

  // --- SLO: share of valid streams that ended with a server fault --------------------------------
  const slo = c.slo;
  const count = 'stream_duration_seconds_count';
  const valid = slo.excludedOutcomes.length > 0 ? `outcome!~"${re(slo.excludedOutcomes)}"` : '';
  const bad = `outcome=~"${re(slo.badOutcomes)}"`;
  const windows = [...new Set(['5m', ...[...slo.page.windows, ...slo.ticket.windows].flatMap((w) => [w.short, w.long])])];
  const order = ['5m', '30m', '1h', '2h', '6h', '1d', '3d'];
  windows.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  // Closed streams per second over 5m, bad and valid, per job: the only rules that read the raw
  // histogram (route x method x outcome series). Longer windows average these 5m rates
  // (sum_over_time of bad / sum_over_time of valid), which is cheap over days of data and, for
  // windows much longer than 5m, the same as the rate over the window.
  const sloRecords: RecordingRule[] = [
    {
      record: names.sloBad,
      expr: [
        `sum by (job) (rate(${sel(count, bad)}[5m]))`,
        'or',
        `0 * sum by (job) (rate(${sel(count, valid)}[5m]))`,
      ].join('\n'),
    },
    { record: names.sloValid, expr: `sum by (job) (rate(${sel(count, valid)}[5m]))` },
    ...windows.map((w) => ({
      record: names.serverFaultRatio(w),
      expr:
        w === '5m'
          ? `${names.sloBad} / ${names.sloValid}`
          : `sum_over_time(${names.sloBad}[${w}]) / sum_over_time(${names.sloValid}[${w}])`,
    })),
  ];
  const budget = `(1 - ${slo.objective})`;
  const burnExpr = (pairs: SloWindowPair[]): string =>
    pairs
      .map((p) =>
        [
          '(',
          `  ${names.serverFaultRatio(p.long)} > (${p.burnRate} * ${budget})`,
          '  and',
          `  ${names.serverFaultRatio(p.short)} > (${p.burnRate} * ${budget})`,
          ')',
        ].join('\n'),
      )
      .join('\nor\n');
  const burnText = (pairs: SloWindowPair[]): string => pairs.map((p) => `${p.burnRate}x over ${p.long} and ${p.short}`).join(', or ');
  const objectivePct = `${+(slo.objective * 100).toFixed(3)}%`;
  const sloWhat = `${objectivePct} of streams ending without ${slo.badOutcomes.join(' or ')}${
    slo.excludedOutcomes.length > 0 ? ` (${slo.excludedOutcomes.join(', ')} not counted)` : ''
  }`;

  // --- leaks and internal errors: increase over 15m, counting series born inside the window -------
  // increase() cannot see the first increment of a series that appears with value 1 (prom-client
  // creates a labelled child on its first inc()). So a series that did not exist 15m ago, on a
  // target that was already up then, counts with its whole value: all of it happened inside the
  // window. (A target that is new to Prometheus, or was down, only counts by increase(), so that a
  // Prometheus restart or a new scrape target does not fire on old counts.) `or` adds increase()
  // for the other series only: it drops right-hand series whose labels match the left.
  const W = INCREASE_WINDOW;
  const increase = (metric: string, by: string): string =>
    [
      `sum by (${by}) (`,
      `  (${sel(metric)} unless ${sel(metric)} offset ${W})`,
      `    and on (job, instance) (up{${c.selector}} offset ${W} == 1)`,
      '  or',
      `  increase(${sel(metric)}[${W}])`,
      ')',
    ].join('\n');

  const firstWriteRecords: RecordingRule[] = [
    {
      record: names.firstWriteP95,
      expr: `histogram_quantile(0.95, sum by (job, route, le) (rate(${sel('stream_first_write_seconds_bucket')}[5m])))`,
    },
    { record: names.firstWriteRate, expr: `sum by (job, route) (rate(${sel('stream_first_write_seconds_count')}[5m]))` },
  ];
  const gapBuckets = `rate(${sel('stream_longest_write_gap_seconds_bucket')}[5m])`;
  const stutterRecords: RecordingRule[] = [
    { record: names.longestGapP95, expr: `histogram_quantile(0.95, sum by (job, route, le) (${gapBuckets}))` },
    { record: names.longestGapP50, expr: `histogram_quantile(0.5, sum by (job, route, le) (${gapBuckets}))` },
    { record: names.longestGapRate, expr: `sum by (job, route) (rate(${sel('stream_longest_write_gap_seconds_count')}[5m]))` },
  ];
  const leakRecords: RecordingRule[] = [
    { record: names.leaks, expr: increase('stream_leaks_total', 'job, instance, route, kind') },
    { record: names.internalErrors, expr: increase('streamscope_internal_errors_total', 'job, instance, component') },
    { record: names.guardActions, expr: increase('stream_guard_actions_total', 'job, instance, route, guard') },
  ];

  const alerts: AlertingRule[] = [
    {
      alert: name('StalledWrites'),
      expr: `sum by (job, instance, route) (${sel('stream_stalled')}) > ${c.stalledWrites.threshold}`,
      for: c.stalledWrites.for,
      labels: { severity: c.stalledWrites.severity },
      annotations: {
        summary: 'Streams are stuck on a write that never drains.',
        description: `{{ $value | humanize }} open stream(s) of route {{ $labels.route }} on {{ $labels.instance }} (job {{ $labels.job }}) have waited for 'drain' longer than stallAfterMs, for at least ${c.stalledWrites.for}: their clients stopped reading and the queued bytes stay in memory.`,
        runbook_url: runbook(name('StalledWrites')),
      },
    },
    {
      alert: name('DanglingStreams'),
      expr: `${names.leaks}{kind=~"dangling_stream|dangling_async"} > ${c.danglingStreams.threshold}`,
      for: c.danglingStreams.for,
      labels: { severity: c.danglingStreams.severity },
      annotations: {
        summary: 'Streams outlive their clients: the producer still holds them.',
        description: `Route {{ $labels.route }} on {{ $labels.instance }} (job {{ $labels.job }}) raised {{ $value | humanize }} {{ $labels.kind }} finding(s) in the last ${INCREASE_WINDOW}: the client went away but the handler (or async work it started) still holds the stream.`,
        runbook_url: runbook(name('DanglingStreams')),
      },
    },
    {
      alert: name('ZombieProducers'),
      expr: `${names.leaks}{kind="zombie_producer"} > ${c.zombieProducers.threshold}`,
      for: c.zombieProducers.for,
      labels: { severity: c.zombieProducers.severity },
      annotations: {
        summary: 'Producers keep writing after their clients left.',
        description: `Route {{ $labels.route }} on {{ $labels.instance }} (job {{ $labels.job }}) raised {{ $value | humanize }} zombie_producer finding(s) in the last ${INCREASE_WINDOW}: writes keep arriving after the client went away, so the work behind them (an LLM call, a timer, a cursor) never stopped.`,
        runbook_url: runbook(name('ZombieProducers')),
      },
    },
    {
      alert: name('GuardActions'),
      expr: `${names.guardActions} > ${c.guardActions.threshold}`,
      for: c.guardActions.for,
      labels: { severity: c.guardActions.severity },
      annotations: {
        summary: 'An opt-in guard cut streams or stopped producers.',
        description: `Guard {{ $labels.guard }} acted {{ $value | humanize }} time(s) on route {{ $labels.route }} on {{ $labels.instance }} (job {{ $labels.job }}) in the last ${INCREASE_WINDOW}: the process was protected, but those clients lost their stream (outcome error) and reconnect.`,
        runbook_url: runbook(name('GuardActions')),
      },
    },
    {
      alert: name('BufferedBytesHigh'),
      expr: `sum by (job, instance) (${sel('stream_buffered_bytes')}) > ${c.bufferedBytes.thresholdBytes}`,
      for: c.bufferedBytes.for,
      labels: { severity: c.bufferedBytes.severity },
      annotations: {
        summary: 'Streams queue too many bytes in process memory.',
        description: `{{ $labels.instance }} (job {{ $labels.job }}) holds {{ $value | humanize1024 }}B queued in user space for its open streams, above ${bytesText(c.bufferedBytes.thresholdBytes)} for ${c.bufferedBytes.for}.`,
        runbook_url: runbook(name('BufferedBytesHigh')),
      },
    },
    {
      alert: name('AbnormalTerminationFastBurn'),
      expr: burnExpr(slo.page.windows),
      for: slo.page.for,
      labels: { severity: slo.page.severity },
      annotations: {
        summary: 'Streams end with errors or timeouts fast enough to exhaust the error budget within days.',
        description: `Job {{ $labels.job }} spends its stream error budget (objective: ${sloWhat}) at ${burnText(slo.page.windows)}; server-fault ratio over the long window: {{ $value | humanizePercentage }}.`,
        runbook_url: runbook(name('AbnormalTerminationFastBurn')),
      },
    },
    {
      alert: name('AbnormalTerminationSlowBurn'),
      expr: burnExpr(slo.ticket.windows),
      for: slo.ticket.for,
      labels: { severity: slo.ticket.severity },
      annotations: {
        summary: 'Streams end with errors or timeouts fast enough to exhaust the error budget within the month.',
        description: `Job {{ $labels.job }} spends its stream error budget (objective: ${sloWhat}) at ${burnText(slo.ticket.windows)}; server-fault ratio over the long window: {{ $value | humanizePercentage }}.`,
        runbook_url: runbook(name('AbnormalTerminationSlowBurn')),
      },
    },
    {
      alert: name('FirstWriteSlow'),
      expr: [
        `${names.firstWriteP95} > ${c.firstWrite.p95Seconds}`,
        'and on (job, route)',
        `${names.firstWriteRate} > ${c.firstWrite.minStreamsPerSecond}`,
      ].join('\n'),
      for: c.firstWrite.for,
      labels: { severity: c.firstWrite.severity },
      annotations: {
        summary: 'Time to first write (time to first token) is too slow.',
        description: `p95 time to first write of route {{ $labels.route }} (job {{ $labels.job }}) is {{ $value | humanizeDuration }}, above ${c.firstWrite.p95Seconds}s for ${c.firstWrite.for}.`,
        runbook_url: runbook(name('FirstWriteSlow')),
      },
    },
    {
      alert: name('Stutter'),
      expr: [
        `${names.longestGapP95} > ${c.stutter.p95Seconds}`,
        `and on (job, route) ${names.longestGapP95} > ${c.stutter.timesMedian} * ${names.longestGapP50}`,
        'and on (job, route)',
        `${names.longestGapRate} > ${c.stutter.minStreamsPerSecond}`,
      ].join('\n'),
      for: c.stutter.for,
      labels: { severity: c.stutter.severity },
      annotations: {
        summary: 'Streams stutter: long gaps between writes mid-stream.',
        description: `p95 of the longest gap between writes per stream of route {{ $labels.route }} (job {{ $labels.job }}) is {{ $value | humanizeDuration }}, above ${c.stutter.p95Seconds}s and ${c.stutter.timesMedian}x the median stream's, for ${c.stutter.for}: some producers pause mid-stream.`,
        runbook_url: runbook(name('Stutter')),
      },
    },
    {
      alert: name('InternalErrors'),
      expr: `${names.internalErrors} > ${c.internalErrors.threshold}`,
      for: c.internalErrors.for,
      labels: { severity: c.internalErrors.severity },
      annotations: {
        summary: 'streamscope swallowed faults of its own.',
        description: `streamscope component {{ $labels.component }} on {{ $labels.instance }} (job {{ $labels.job }}) swallowed {{ $value | humanize }} fault(s) in the last ${INCREASE_WINDOW}. The app is unaffected; streamscope metrics or findings may be incomplete.`,
        runbook_url: runbook(name('InternalErrors')),
      },
    },
    {
      alert: name('TargetAbsent'),
      // Per job: no series of up at all (gone from service discovery or the scrape configuration),
      // or every target of the job down. absent() can only name the job when the selector matches
      // it with '='; with a regular expression the alert carries no job label.
      expr: `absent(up{${c.selector}}) or max by (job) (up{${c.selector}}) == 0`,
      for: c.targetAbsent.for,
      labels: { severity: c.targetAbsent.severity },
      annotations: {
        summary: 'No streamscope target is being scraped.',
        description: `{{ if $labels.job }}Job {{ $labels.job }} has{{ else }}The jobs matching {${c.selector}} have{{ end }} had no target up for ${c.targetAbsent.for} (down, or gone from the scrape configuration): streamscope metrics are missing and every other streamscope alert is blind.`,
        runbook_url: runbook(name('TargetAbsent')),
      },
    },
  ];

  // Each alert sits in the group of the recording rules it reads, after them: rules of a group are
  // evaluated in order, while groups run independently, so an alert in another group would read the
  // recording of the previous evaluation.
  const pick = (...suffixes: string[]): AlertingRule[] => alerts.filter((a) => suffixes.some((x) => a.alert === name(x)));
  return [
    { name: 'streamscope.streams', rules: pick('StalledWrites', 'BufferedBytesHigh', 'TargetAbsent') },
    { name: 'streamscope.leaks', rules: [...leakRecords, ...pick('DanglingStreams', 'ZombieProducers', 'GuardActions', 'InternalErrors')] },
    { name: 'streamscope.slo', rules: [...sloRecords, ...pick('AbnormalTerminationFastBurn', 'AbnormalTerminationSlowBurn')] },
    { name: 'streamscope.first-write', rules: [...firstWriteRecords, ...pick('FirstWriteSlow')] },
    { name: 'streamscope.stutter', rules: [...stutterRecords, ...pick('Stutter')] },
  ];
}

/** The committed rules file, relative to the repo root. */
export const RULES_FILE = 'alerts/streamscope.rules.yml';

export const GENERATED_HEADER = [
  '# Generated by `npm run alerts` from alerts/config.ts (alerts/rules.ts). Do not edit by hand:',
  '# change the config and regenerate; test/alerts-rules.test.ts fails when this file is stale.',
  '',
].join('\n');

export function renderRules(c: AlertsConfig): string {
  return GENERATED_HEADER + stringify({ groups: ruleGroups(c) }, { lineWidth: 0 });
}
