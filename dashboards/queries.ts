/**
 * PromQL for the dashboards, built from the metric contract (DESIGN.md "Metrics").
 * Every selector carries the job/instance/route variables; every range is `$__rate_interval`
 * (time series) or `$__range` (ranking tables, "over the whole dashboard range").
 */

/** Label matchers every streamscope series is filtered by. */
export const SCOPE = 'job=~"$job", instance=~"$instance"';
export const ROUTE_SCOPE = `${SCOPE}, route=~"$route"`;

/** Outcomes that count against the server-fault objective (client aborts are not the server's fault). */
export const SERVER_FAULT_OUTCOMES = 'error|timeout';
export const CLIENT_ABORTED = 'client_aborted';

export type Range = '$__rate_interval' | '$__range';

const by = (labels: readonly string[]): string => (labels.length > 0 ? ` by (${labels.join(', ')})` : '');

/** `metric{job=~"$job", instance=~"$instance", route=~"$route", extra}`; `routed: false` for metrics without a route label. */
export function sel(metric: string, extra = '', routed = true): string {
  const scope = routed ? ROUTE_SCOPE : SCOPE;
  return `${metric}{${scope}${extra === '' ? '' : `, ${extra}`}}`;
}

/** Per-second rate of a counter, summed by `labels`. */
export function sumRate(metric: string, labels: readonly string[], extra = '', routed = true): string {
  return `sum${by(labels)} (rate(${sel(metric, extra, routed)}[$__rate_interval]))`;
}

/** Increase of a counter over the dashboard range, summed by `labels` (ranking tables). */
export function sumIncrease(metric: string, labels: readonly string[], extra = ''): string {
  return `sum${by(labels)} (increase(${sel(metric, extra)}[$__range]))`;
}

/** A gauge summed by `labels`. */
export function sumGauge(metric: string, labels: readonly string[]): string {
  return `sum${by(labels)} (${sel(metric)})`;
}

/** The q-quantile of a histogram (`name` without `_bucket`), per `labels`. */
export function quantile(q: number, histogram: string, labels: readonly string[], range: Range = '$__rate_interval'): string {
  const fn = range === '$__range' ? 'increase' : 'rate';
  return `histogram_quantile(${q}, sum by (${[...labels, 'le'].join(', ')}) (${fn}(${sel(`${histogram}_bucket`)}[${range}])))`;
}

/**
 * Share of closed streams whose outcome matches `outcomes`, per `labels`; 0 (not "no data") when
 * streams closed but none with those outcomes. `excludeClientAborts` takes client aborts out of the
 * denominator too, which is how the alerts' SLO counts (see docs/alerts.md).
 */
export function outcomeShare(outcomes: string, labels: readonly string[], excludeClientAborts: boolean, range: Range = '$__rate_interval'): string {
  const count = 'stream_duration_seconds_count';
  const total = (extra: string): string =>
    range === '$__range' ? sumIncrease(count, labels, extra) : sumRate(count, labels, extra);
  const all = total(excludeClientAborts ? `outcome!="${CLIENT_ABORTED}"` : '');
  return `(${total(`outcome=~"${outcomes}"`)} or ${all} * 0) / ${all}`;
}

/** Fraction of writes that met backpressure, per `labels`. */
export function blockedShare(labels: readonly string[]): string {
  return `${sumRate('write_blocked_total', labels)} / ${sumRate('stream_writes_total', labels)}`;
}
