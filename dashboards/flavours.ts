/**
 * The two JSON flavours of each dashboard.
 *
 * - provisioning: for Grafana's file provisioning (and the HTTP API). Panels use the `datasource`
 *   template variable; the file has no `__inputs`, because provisioning never substitutes them.
 * - import: for Dashboards → New → Import in the UI. Same dashboard plus `__inputs`/`__requires`;
 *   the UI asks for a Prometheus data source and writes its uid wherever `${DS_PROMETHEUS}` appears
 *   (only the default of the `datasource` variable), so panels still follow the variable.
 */
import type * as dash from '@grafana/grafana-foundation-sdk/dashboard';
import { MIN_GRAFANA_VERSION } from './board.js';

export const DS_INPUT = 'DS_PROMETHEUS';

type Json = Record<string, unknown>;

const PANEL_NAMES: Record<string, string> = { timeseries: 'Time series', table: 'Table', stat: 'Stat' };

/** Stable, diff-friendly serialization: 2-space indent, trailing newline. */
export function serialize(obj: unknown): string {
  return `${JSON.stringify(obj, null, 2)}\n`;
}

export function provisioningFlavour(d: dash.Dashboard): Json {
  return JSON.parse(JSON.stringify(d)) as Json;
}

function panelTypes(d: dash.Dashboard): string[] {
  const types = new Set<string>();
  for (const p of d.panels ?? []) {
    if (p.type === 'row') {
      for (const inner of (p as dash.RowPanel).panels) types.add(inner.type);
    } else types.add(p.type);
  }
  return [...types].sort();
}

export function importFlavour(d: dash.Dashboard): Json {
  const body = provisioningFlavour(d);
  const templating = body.templating as { list: Json[] };
  for (const v of templating.list) {
    if (v.type === 'datasource') v.current = { selected: false, text: `\${${DS_INPUT}}`, value: `\${${DS_INPUT}}` };
  }
  const requires: Json[] = [
    { type: 'grafana', id: 'grafana', name: 'Grafana', version: MIN_GRAFANA_VERSION },
    { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
    ...panelTypes(d).map((t) => ({ type: 'panel', id: t, name: PANEL_NAMES[t] ?? t, version: '' })),
  ];
  return {
    __inputs: [
      {
        name: DS_INPUT,
        label: 'Prometheus',
        description: 'The Prometheus that scrapes the streamscope /metrics endpoints.',
        type: 'datasource',
        pluginId: 'prometheus',
        pluginName: 'Prometheus',
      },
    ],
    __elements: {},
    __requires: requires,
    id: null,
    ...body,
  };
}
