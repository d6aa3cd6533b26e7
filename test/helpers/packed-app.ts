import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './child.js';

const run = promisify(execFile);
let packed: Promise<string> | undefined;

/** `npm pack` of the built package (run `npm run build` first), once per test file. Resolves the tarball path. */
export function packTarball(): Promise<string> {
  packed ??= (async () => {
    const dest = mkdtempSync(join(tmpdir(), 'streamscope-pack-'));
    await run('npm', ['pack', '--silent', '--pack-destination', dest], { cwd: ROOT, timeout: 120_000 });
    const file = readdirSync(dest).find((f) => f.endsWith('.tgz'));
    if (file === undefined) throw new Error(`npm pack wrote no tarball into ${dest}`);
    return join(dest, file);
  })();
  return packed;
}

/**
 * A fresh application folder, as a user makes one: `npm install <the packed tarball> <deps…>` (from the npm
 * registry). Returns the folder.
 */
export async function installApp(deps: string[], pkg: Record<string, unknown> = {}): Promise<string> {
  const tarball = await packTarball();
  const dir = mkdtempSync(join(tmpdir(), 'streamscope-app-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'app', private: true, ...pkg }));
  await run('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--prefer-offline', tarball, ...deps], {
    cwd: dir,
    timeout: 300_000,
  });
  return dir;
}
