/** Every generated dashboard file, as path (relative to the repo root) → content. Pure: writes nothing. */
import type * as dash from '@grafana/grafana-foundation-sdk/dashboard';
import { importFlavour, provisioningFlavour, serialize } from './flavours.js';
import { overviewDashboard } from './overview.js';
import { routesDashboard } from './routes.js';

export const PROVISIONING_DIR = 'dashboards/provisioning';
export const IMPORT_DIR = 'dashboards/import';

/** The dashboards, keyed by their file name (without .json). */
export function dashboards(): Record<string, dash.Dashboard> {
  return {
    'streamscope-overview': overviewDashboard(),
    'streamscope-routes': routesDashboard(),
  };
}

export function renderDashboards(): Map<string, string> {
  const files = new Map<string, string>();
  for (const [name, d] of Object.entries(dashboards())) {
    files.set(`${PROVISIONING_DIR}/${name}.json`, serialize(provisioningFlavour(d)));
    files.set(`${IMPORT_DIR}/${name}.json`, serialize(importFlavour(d)));
  }
  return files;
}
