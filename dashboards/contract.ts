/**
 * The metric contract as the library really registers it: src/metrics.ts in a fresh registry.
 * Used by the dashboard and rule tests to check that every query names contract metrics only.
 */
import { Registry } from 'prom-client';
import { getMetricsSet } from '../src/metrics.js';
import type { Contract } from './lint.js';

/** The table of DESIGN.md "Metrics": name → type and labels. The registry must agree with it. */
export const DESIGN_METRICS: Record<string, { type: 'counter' | 'gauge' | 'histogram'; labels: string[] }> = {
  stream_duration_seconds: { type: 'histogram', labels: ['route', 'method', 'outcome'] },
  stream_active_connections: { type: 'gauge', labels: ['route'] },
  write_blocked_total: { type: 'counter', labels: ['route'] },
  stream_started_total: { type: 'counter', labels: ['route', 'method'] },
  stream_first_write_seconds: { type: 'histogram', labels: ['route'] },
  stream_write_blocked_seconds: { type: 'histogram', labels: ['route'] },
  stream_bytes_written_total: { type: 'counter', labels: ['route'] },
  stream_writes_total: { type: 'counter', labels: ['route'] },
  stream_buffered_bytes: { type: 'gauge', labels: ['route'] },
  stream_stalled: { type: 'gauge', labels: ['route'] },
  stream_leaks_total: { type: 'counter', labels: ['route', 'kind'] },
  stream_writes_after_close_total: { type: 'counter', labels: ['route'] },
  stream_resumes_total: { type: 'counter', labels: ['route', 'result'] },
  stream_rejected_total: { type: 'counter', labels: ['route', 'reason'] },
  stream_guard_actions_total: { type: 'counter', labels: ['route', 'guard'] },
  streamscope_internal_errors_total: { type: 'counter', labels: ['component'] },
};

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
