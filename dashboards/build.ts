/**
 * `npm run dashboards`: regenerates the committed dashboard JSON (both flavours) from the
 * TypeScript source. test/dashboards-staleness.test.ts fails when the committed files differ.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IMPORT_DIR, PROVISIONING_DIR, renderDashboards } from './render.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const files = renderDashboards();

for (const dir of [PROVISIONING_DIR, IMPORT_DIR]) {
  mkdirSync(join(root, dir), { recursive: true });
  // Drop JSON of dashboards that no longer exist.
  for (const f of readdirSync(join(root, dir))) {
    if (f.endsWith('.json') && !files.has(`${dir}/${f}`)) rmSync(join(root, dir, f));
  }
}
for (const [path, content] of files) {
  writeFileSync(join(root, path), content);
  process.stdout.write(`wrote ${path}\n`);
}
