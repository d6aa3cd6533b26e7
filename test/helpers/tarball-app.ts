/**
 * What a user installs: `npm pack` of this package (the built dist/, so run `npm run build` first), installed
 * into a fresh app folder together with the framework's real packages from the registry.
 *
 *   const app = await tarballApp({ hono: '4.13.19' });   // { dir, run(file) }
 *
 * The package is packed once per test process; each app folder is new and removed by `cleanup()`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './child.js';

const run = promisify(execFile);

let packed: Promise<string> | undefined;
const dirs: string[] = [];

/** The path of `streamscope-<version>.tgz`, packed once per process into a temporary folder. */
export function packOnce(): Promise<string> {
  packed ??= (async () => {
    const out = mkdtempSync(join(tmpdir(), 'streamscope-pack-'));
    dirs.push(out);
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', out], { cwd: ROOT, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
    const [info] = JSON.parse(stdout) as { filename: string }[];
    return join(out, info!.filename);
  })();
  return packed;
}

/** The version of a package this repository has installed (so the app gets what the tests were written against). */
export function installedVersion(name: string): string {
  return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

export interface TarballApp {
  dir: string;
}

/** A new app folder (`"type": "module"`) with the packed streamscope and `deps` (name → version) installed. */
export async function tarballApp(deps: Record<string, string>): Promise<TarballApp> {
  const tgz = await packOnce();
  const dir = mkdtempSync(join(tmpdir(), 'streamscope-app-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'streamscope-test-app', private: true, type: 'module' }, null, 2));
  const specs = [tgz, ...Object.entries(deps).map(([n, v]) => `${n}@${v}`)];
  await run('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error', ...specs], {
    cwd: dir,
    timeout: 300_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return { dir };
}

/**
 * Turns one of examples/*.ts into plain ESM for the app folder: types stripped (esbuild), and the
 * repository-relative imports (`../src/index.js`, `../src/adapters/hono.js`) replaced by the package's
 * public entry points (`streamscope`, `streamscope/hono`).
 */
export async function exampleAsApp(example: string, app: TarballApp, name: string): Promise<string> {
  const { transform } = await import('esbuild');
  const src = readFileSync(join(ROOT, 'examples', example), 'utf8')
    .replace(/(['"])\.\.\/src\/index\.js\1/g, "'streamscope'")
    .replace(/(['"])\.\.\/src\/adapters\/([a-z0-9]+)\.js\1/g, "'streamscope/$2'");
  if (/\.\.\/src\//.test(src)) throw new Error(`${example} imports a private module of the repository`);
  const { code } = await transform(src, { loader: 'ts', format: 'esm', target: 'node20' });
  const file = join(app.dir, name);
  writeFileSync(file, code);
  return file;
}

/** Removes every folder this helper made in this process. */
export function cleanupTarballApps(): void {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
  packed = undefined;
}
