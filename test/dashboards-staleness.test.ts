/** The committed dashboard JSON is exactly what `npm run dashboards` generates from dashboards/*.ts. */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IMPORT_DIR, PROVISIONING_DIR, renderDashboards } from '../dashboards/render.js';

const root = resolve(import.meta.dirname, '..');

describe('generated dashboards', () => {
  const files = renderDashboards();

  it.each([...files.keys()])('%s is up to date (run `npm run dashboards` if not)', (path) => {
    expect(readFileSync(join(root, path), 'utf8')).toBe(files.get(path));
  });

  it('no stale JSON is left in the generated folders', () => {
    for (const dir of [PROVISIONING_DIR, IMPORT_DIR]) {
      const onDisk = readdirSync(join(root, dir)).filter((f) => f.endsWith('.json')).map((f) => `${dir}/${f}`);
      expect(onDisk.sort()).toEqual([...files.keys()].filter((p) => p.startsWith(`${dir}/`)).sort());
    }
  });

  it('generation is deterministic', () => {
    expect(renderDashboards()).toEqual(files);
  });
});
