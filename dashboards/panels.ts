/**
 * Panel and variable builders shared by the dashboards, on @grafana/grafana-foundation-sdk.
 * Each panel: the `$datasource` variable, a unit, a title, a description, and refIds A, B, …
 */
import * as common from '@grafana/grafana-foundation-sdk/common';
import * as dash from '@grafana/grafana-foundation-sdk/dashboard';
import * as prom from '@grafana/grafana-foundation-sdk/prometheus';
import * as table from '@grafana/grafana-foundation-sdk/table';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';

/** Every panel and query goes through the dashboard's datasource variable. */
export const DATASOURCE: common.DataSourceRef = { type: 'prometheus', uid: '${datasource}' };

export interface Query {
  expr: string;
  legend?: string;
}

export interface TimeseriesSpec {
  title: string;
  description: string;
  unit: string;
  queries: Query[];
  /** Grid width out of 24 (default 12). */
  width?: number;
  height?: number;
  /** Stack series (normal) — for parts of a whole, e.g. outcomes. */
  stack?: boolean;
  /** Legend as a table sorted by this calc, descending (e.g. 'max'): worst first. */
  rankBy?: 'max' | 'mean' | 'lastNotNull';
}

function target(q: Query, i: number): prom.DataqueryBuilder {
  const t = new prom.DataqueryBuilder()
    .datasource(DATASOURCE)
    .refId(String.fromCharCode(65 + i))
    .expr(q.expr)
    .range();
  if (q.legend !== undefined) t.legendFormat(q.legend);
  return t;
}

export function timeseriesPanel(spec: TimeseriesSpec): timeseries.PanelBuilder {
  const legend = new common.VizLegendOptionsBuilder().showLegend(true);
  if (spec.rankBy === undefined) legend.displayMode(common.LegendDisplayMode.List).placement(common.LegendPlacement.Bottom).calcs([]);
  else
    legend
      .displayMode(common.LegendDisplayMode.Table)
      .placement(common.LegendPlacement.Right)
      .calcs(['mean', 'max', 'lastNotNull'])
      .sortBy(spec.rankBy === 'lastNotNull' ? 'Last *' : spec.rankBy === 'max' ? 'Max' : 'Mean')
      .sortDesc(true);
  const p = new timeseries.PanelBuilder()
    .title(spec.title)
    .description(spec.description)
    .datasource(DATASOURCE)
    .unit(spec.unit)
    .min(0)
    .span(spec.width ?? 12)
    .height(spec.height ?? 8)
    .lineWidth(1)
    .fillOpacity(spec.stack === true ? 30 : 10)
    .showPoints(common.VisibilityMode.Never)
    .legend(legend)
    .tooltip(new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi).sort(common.SortOrder.Descending))
    .targets(spec.queries.map(target));
  if (spec.stack === true) p.stacking(new common.StackingConfigBuilder().mode(common.StackingMode.Normal));
  return p;
}

export interface Column {
  /** Column header; also the sort key of the table. */
  name: string;
  expr: string;
  unit: string;
}

export interface TableSpec {
  title: string;
  description: string;
  /** Columns after the `route` column; the table sorts by the first, descending. */
  columns: Column[];
  width?: number;
  height?: number;
}

/**
 * A ranking table: one instant query per column, joined on `route`, sorted by the first column,
 * descending — so the slowest (or leakiest) route is the first row.
 */
export function rankingTable(spec: TableSpec): table.PanelBuilder {
  const rename: Record<string, string> = {};
  const order: Record<string, number> = { route: 0 };
  spec.columns.forEach((c, i) => {
    rename[`Value #${String.fromCharCode(65 + i)}`] = c.name;
    order[`Value #${String.fromCharCode(65 + i)}`] = i + 1;
  });
  const p = new table.PanelBuilder()
    .title(spec.title)
    .description(spec.description)
    .datasource(DATASOURCE)
    .unit('short')
    .span(spec.width ?? 24)
    .height(spec.height ?? 8)
    .targets(
      spec.columns.map((c, i) =>
        new prom.DataqueryBuilder()
          .datasource(DATASOURCE)
          .refId(String.fromCharCode(65 + i))
          .expr(c.expr)
          .instant()
          .format(prom.PromQueryFormat.Table)
          .legendFormat(c.name),
      ),
    )
    .withTransformation({ id: 'merge', options: {} })
    .withTransformation({
      id: 'organize',
      options: { excludeByName: { Time: true }, indexByName: order, renameByName: rename },
    })
    .sortBy([new common.TableSortByFieldStateBuilder().displayName(spec.columns[0].name).desc(true)]);
  for (const c of spec.columns) p.overrideByName(c.name, [{ id: 'unit', value: c.unit }]);
  return p;
}

const variableQuery = (metricSelector: string, label: string): string => `label_values(${metricSelector}, ${label})`;

/** A multi-value Prometheus label variable, as Grafana's dashboard-linter wants it (All = `.+`). */
function labelVariable(name: string, label: string, description: string, query: string): dash.QueryVariableBuilder {
  return new dash.QueryVariableBuilder(name)
    .label(label)
    .description(description)
    .datasource(DATASOURCE)
    .query(query)
    .definition(query)
    .refresh(dash.VariableRefresh.OnTimeRangeChanged)
    .sort(dash.VariableSort.AlphabeticalAsc)
    .multi(true)
    .includeAll(true)
    .allValue('.+')
    .current({ selected: true, text: 'All', value: '$__all' });
}

/** datasource, job, instance, route — in that order, each narrowing the next. */
export function variables(): Array<dash.DatasourceVariableBuilder | dash.QueryVariableBuilder> {
  return [
    new dash.DatasourceVariableBuilder('datasource')
      .label('Data source')
      .description('The Prometheus that scrapes the streamscope /metrics endpoints.')
      .type('prometheus'),
    labelVariable('job', 'Job', 'Prometheus job(s) of the streaming service.', variableQuery('stream_started_total', 'job')),
    labelVariable(
      'instance',
      'Instance',
      'Scrape target(s) (host:port) of the chosen jobs.',
      variableQuery('stream_started_total{job=~"$job"}', 'instance'),
    ),
    labelVariable(
      'route',
      'Route',
      'Route label: the route template (framework adapters) or the route option of instrument().',
      variableQuery('stream_started_total{job=~"$job", instance=~"$instance"}', 'route'),
    ),
  ];
}

/** Grafana's built-in "Annotations & Alerts" query, so the annotation list is never empty. */
export function builtInAnnotation(): dash.AnnotationQueryBuilder {
  return new dash.AnnotationQueryBuilder()
    .name('Annotations & Alerts')
    .datasource({ type: 'grafana', uid: '-- Grafana --' })
    .builtIn(1)
    .enable(true)
    .hide(true)
    .iconColor('rgba(0, 211, 255, 1)')
    .type('dashboard');
}

/** Links to the other streamscope dashboards (by tag), keeping time range and variables. */
export function streamscopeLinks(): dash.DashboardLinkBuilder {
  return new dash.DashboardLinkBuilder('streamscope')
    .type(dash.DashboardLinkType.Dashboards)
    .tags(['streamscope'])
    .asDropdown(true)
    .includeVars(true)
    .keepTime(true)
    .icon('external link')
    .tooltip('Other streamscope dashboards')
    .targetBlank(false);
}
