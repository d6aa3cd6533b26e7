/**
 * A dashboard under construction: stable panel ids in declaration order, rows, the shared
 * variables, annotations and links, and an explicit schemaVersion.
 */
import type * as cog from '@grafana/grafana-foundation-sdk/cog';
import * as dash from '@grafana/grafana-foundation-sdk/dashboard';
import { builtInAnnotation, streamscopeLinks, variables } from './panels.js';

/**
 * Dashboard JSON schema version written into every dashboard. 39 is what Grafana 10.4 and 11.0
 * write; newer Grafana versions migrate it forward on load (a no-op for the panels used here).
 */
export const SCHEMA_VERSION = 39;

/** Oldest Grafana the dashboards are written for (the Import UI flavour declares it in `__requires`). */
export const MIN_GRAFANA_VERSION = '10.4.0';

export interface BoardSpec {
  uid: string;
  title: string;
  description: string;
  tags?: string[];
}

type PanelLike = cog.Builder<dash.Panel> & { id(id: number): unknown };

export class Board {
  private readonly builder: dash.DashboardBuilder;
  private nextId = 1;

  constructor(spec: BoardSpec) {
    this.builder = new dash.DashboardBuilder(spec.title)
      .uid(spec.uid)
      .description(spec.description)
      .tags(['streamscope', ...(spec.tags ?? [])])
      .readonly()
      .tooltip(dash.DashboardCursorSync.Crosshair)
      .timezone('browser')
      .time({ from: 'now-1h', to: 'now' })
      .refresh('30s')
      .annotation(builtInAnnotation())
      .link(streamscopeLinks())
      .variables(variables());
  }

  row(title: string): this {
    this.builder.withRow(new dash.RowBuilder(title).id(this.nextId++));
    return this;
  }

  panel(p: PanelLike): this {
    p.id(this.nextId++);
    this.builder.withPanel(p);
    return this;
  }

  build(): dash.Dashboard {
    const d = this.builder.build();
    d.schemaVersion = SCHEMA_VERSION;
    // The SDK defaults links and annotations to Grafana 12's "controls menu" placement, which hides
    // them behind a menu there; the default placement shows them on every Grafana version.
    for (const l of d.links ?? []) delete l.placement;
    for (const a of d.annotations.list ?? []) delete a.placement;
    return d;
  }
}
