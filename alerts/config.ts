/**
 * The one place for the alert rules' selectors and thresholds. Edit here (or copy this object into
 * your own script, see docs/alerts.md), then `npm run alerts` regenerates alerts/streamscope.rules.yml.
 * The promtool tests in alerts/tests/ are written against these defaults.
 */

export type Severity = 'critical' | 'warning' | 'info';

/** A Prometheus duration such as `30s`, `5m`, `1h`. */
export type Duration = string;

export interface SloWindowPair {
  /** Burn-rate factor: how many times faster than "exactly on budget" the budget is being spent. */
  burnRate: number;
  long: '5m' | '30m' | '1h' | '2h' | '6h' | '1d' | '3d';
  short: '5m' | '30m' | '1h' | '2h' | '6h' | '1d' | '3d';
}

export interface AlertsConfig {
  /** `options.prefix` given to streamscope in the app (prepended to every metric name). */
  metricPrefix: string;
  /**
   * Label matchers that pick the streamscope targets, applied to every streamscope series and to `up`.
   * Must name the scrape job(s) of your streaming services.
   */
  selector: string;
  /** Alert names start with this (CamelCase). */
  namePrefix: string;
  /** runbook_url = this + '#' + lower-cased alert name. */
  runbookUrl: string;

  stalledWrites: { threshold: number; for: Duration; severity: Severity };
  danglingStreams: { threshold: number; for: Duration; severity: Severity };
  zombieProducers: { threshold: number; for: Duration; severity: Severity };
  bufferedBytes: { thresholdBytes: number; for: Duration; severity: Severity };
  guardActions: { threshold: number; for: Duration; severity: Severity };
  firstWrite: { p95Seconds: number; minStreamsPerSecond: number; for: Duration; severity: Severity };
  /**
   * Stutter: p95 over streams of each stream's longest gap between writes (stream_longest_write_gap_seconds)
   * above `p95Seconds` and above `timesMedian` times the median stream's, with `minStreamsPerSecond` closing.
   */
  stutter: { p95Seconds: number; timesMedian: number; minStreamsPerSecond: number; for: Duration; severity: Severity };
  internalErrors: { threshold: number; for: Duration; severity: Severity };
  targetAbsent: { for: Duration; severity: Severity };
  slo: {
    /** Fraction of valid streams that must end without a server fault, e.g. 0.995. */
    objective: number;
    /** Outcomes that spend the error budget. */
    badOutcomes: string[];
    /** Outcomes that are not counted at all (neither good nor bad). Empty to count every stream. */
    excludedOutcomes: string[];
    page: { windows: SloWindowPair[]; for: Duration; severity: Severity };
    ticket: { windows: SloWindowPair[]; for: Duration; severity: Severity };
  };
}

export const defaultConfig: AlertsConfig = {
  metricPrefix: '',
  selector: 'job="streamscope"',
  namePrefix: 'Streamscope',
  runbookUrl: 'https://github.com/streamscope/streamscope/blob/main/alerts/runbooks.md',

  // Open streams blocked on 'drain' longer than stallAfterMs, for this long.
  stalledWrites: { threshold: 0, for: '5m', severity: 'warning' },
  // Leak findings within the last 15 minutes (stream_leaks_total, kind dangling_stream|dangling_async).
  danglingStreams: { threshold: 0, for: '0m', severity: 'warning' },
  // Leak findings within the last 15 minutes (kind zombie_producer).
  zombieProducers: { threshold: 0, for: '0m', severity: 'warning' },
  // Bytes queued in user space per instance: process memory that a slow client pins.
  bufferedBytes: { thresholdBytes: 64 * 1024 * 1024, for: '10m', severity: 'warning' },
  // Streams cut or producers stopped by an opt-in guard within the last 15 minutes (stream_guard_actions_total).
  guardActions: { threshold: 0, for: '0m', severity: 'warning' },
  // p95 time to first write per job and route over 5 minutes, ignored below the minimum traffic.
  firstWrite: { p95Seconds: 2, minStreamsPerSecond: 0.05, for: '15m', severity: 'warning' },
  // p95 of the longest gap between writes per stream, per job and route over 5 minutes: above 5 s and above
  // 4 x the median stream's (a feed that idles between heartbeats has all its streams alike and stays quiet),
  // ignored below the minimum traffic.
  stutter: { p95Seconds: 5, timesMedian: 4, minStreamsPerSecond: 0.05, for: '15m', severity: 'warning' },
  // Faults swallowed inside streamscope within the last 15 minutes.
  internalErrors: { threshold: 0, for: '0m', severity: 'info' },
  // No target matching the selector is up.
  targetAbsent: { for: '5m', severity: 'warning' },
  // Multi-window, multi-burn-rate alerts on a 30-day objective (Google SRE workbook, chapter 5).
  slo: {
    objective: 0.995,
    badOutcomes: ['error', 'timeout'],
    excludedOutcomes: ['client_aborted'],
    page: {
      windows: [
        { burnRate: 14.4, long: '1h', short: '5m' },
        { burnRate: 6, long: '6h', short: '30m' },
      ],
      for: '2m',
      severity: 'critical',
    },
    ticket: {
      windows: [
        { burnRate: 3, long: '1d', short: '2h' },
        { burnRate: 1, long: '3d', short: '6h' },
      ],
      for: '15m',
      severity: 'warning',
    },
  },
};
