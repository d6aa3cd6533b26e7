/**
 * The metric contract as the library really registers it: src/consumers/metrics.ts in a fresh registry.
 * Used by the dashboard and rule tests to check that every query names contract metrics only.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { getMetricsSet } from '../src/consumers/metrics.js';
import type { Contract } from './lint.js';

type MetricType = 'counter' | 'gauge' | 'histogram';

/**
 * Reads a metric table in the contract's Markdown form (`| \`name\` | type | labels | meaning |`), as
 * DESIGN.md "Metrics" and docs/metrics.md write it: name → type and label names.
 */
export function parseMetricTable(markdown: string): Record<string, { type: MetricType; labels: string[] }> {
  const out: Record<string, { type: MetricType; labels: string[] }> = {};
  for (const line of markdown.split('\n')) {
    const m = /^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*(counter|gauge|histogram)\s*\|\s*([^|]*)\|/.exec(line);
    if (m === null) continue;
    out[m[1] as string] = { type: m[2] as MetricType, labels: (m[3] as string).split(',').map((l) => l.trim()).filter((l) => l !== '') };
  }
  return out;
}

/**
 * The metric table, from its one source in this repository: docs/metrics.md (which a test holds equal to
 * DESIGN.md's table and to what src/consumers/metrics.ts registers). Dashboards and rules may name these only.
 */
export const DESIGN_METRICS = parseMetricTable(readFileSync(fileURLToPath(new URL('../docs/metrics.md', import.meta.url)), 'utf8'));

/** Reads names, types and label names from a registry holding streamscope's metric set. */
export async function registeredContract(prefix = ''): Promise<Contract> {
  const registry = new Registry();
  getMetricsSet(registry, prefix);
  const metrics: Contract['metrics'] = new Map();
  for (const m of await registry.getMetricsAsJSON()) {
    const metric = registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] };
    metrics.set(m.name, { type: String(m.type) as 'counter' | 'gauge' | 'histogram', labels: [...(metric.labelNames ?? [])] });
  }
  return { metrics };
}
