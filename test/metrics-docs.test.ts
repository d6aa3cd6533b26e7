import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DESIGN_METRICS, parseMetricTable, registeredContract } from '../dashboards/contract.js';

const root = resolve(import.meta.dirname, '..');
// The contract lives beside the checkout (`../shared/DESIGN.md`), in development and in CI alike.
const designPath = resolve(root, '..', 'shared', 'DESIGN.md');

describe('the metric table has one source', () => {
  it('docs/metrics.md lists exactly what src/consumers/metrics.ts registers (names, types, label names)', async () => {
    const registered = await registeredContract();
    const fromRegistry = Object.fromEntries([...registered.metrics].map(([n, m]) => [n, { type: m.type, labels: [...m.labels] }]));
    expect(Object.keys(DESIGN_METRICS).length).toBeGreaterThan(10);
    expect(fromRegistry).toEqual(DESIGN_METRICS);
  });

  it.runIf(existsSync(designPath))('docs/metrics.md agrees with the contract table of DESIGN.md', () => {
    const design = parseMetricTable(readFileSync(designPath, 'utf8'));
    expect(Object.keys(design).length).toBeGreaterThan(10);
    expect(DESIGN_METRICS).toEqual(design);
  });
});
