/**
 * Tests of what users install: `npm pack` the built package once per test run (the tarball is cached by a
 * hash of package.json and dist/, so every test file of a run reuses it), then install it with an app's
 * real dependencies into a fresh temp folder.
 *
 *   const app = await installApp({ express: devVersion('express') });
 *   spawnNode([app.file('server.cjs', source)], env, app.dir)
 *
 * Needs `npm run build` first (npm test does it). Dependencies come from the npm registry through npm's
 * cache (--prefer-offline).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './child.js';

const run = promisify(execFile);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function walk(dir: string, out: string[]): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.isFile()) out.push(p);
  }
}

/** Hash of what `npm pack` would put in the tarball that changes between builds. */
function buildHash(): string {
  const dist = path.join(ROOT, 'dist');
  if (!fs.existsSync(dist)) throw new Error('dist/ is missing: run `npm run build` before the tarball tests');
  const files: string[] = [];
  walk(dist, files);
  const h = createHash('sha256');
  h.update(fs.readFileSync(path.join(ROOT, 'package.json')));
  for (const f of files.sort()) {
    const st = fs.statSync(f);
    h.update(`${path.relative(ROOT, f)}:${st.size}:${st.mtimeMs}\n`);
  }
  return h.digest('hex').slice(0, 16);
}

/** A private (0700) cache directory of ours, never through a symlink. */
function cacheDir(): string {
  const dir = path.join(os.tmpdir(), `streamscope-pack-${process.getuid?.() ?? 'u'}`);
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = fs.lstatSync(dir);
  if (!st.isDirectory() || st.isSymbolicLink() || (process.getuid && st.uid !== process.getuid()) || (st.mode & 0o077) !== 0) {
    throw new Error(`${dir} is not a private directory of this user; remove it`);
  }
  return dir;
}

let packed: Promise<string> | undefined;

/** The path of the packed tarball of the current build (packed at most once per build). */
export function packOnce(): Promise<string> {
  packed ??= (async () => {
    const dir = cacheDir();
    const target = path.join(dir, `streamscope-${buildHash()}.tgz`);
    if (fs.existsSync(target)) return target;
    // tarballs of older builds: keep a day's worth (another test run may still be installing one)
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name);
      try {
        if (Date.now() - fs.lstatSync(p).mtimeMs > 86_400_000) fs.rmSync(p, { recursive: true, force: true });
      } catch {
        /* removed meanwhile */
      }
    }
    const tmp = fs.mkdtempSync(path.join(dir, 'pack-'));
    const { stdout } = await run(npm, ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    const name = (JSON.parse(stdout) as Array<{ filename: string }>)[0]!.filename;
    fs.renameSync(path.join(tmp, name), target); // atomic: a parallel test file sees the whole tarball or none
    fs.rmSync(tmp, { recursive: true, force: true });
    return target;
  })();
  return packed;
}

/** The version of a package this repository has installed (so the app gets what the tests were written against). */
export function installedVersion(name: string): string {
  return (JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The version range of a dependency in the repository's own package.json (what the tests were written against). */
export function devVersion(name: string): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
  const v = pkg.devDependencies?.[name] ?? pkg.dependencies?.[name];
  if (v === undefined) throw new Error(`${name} is not a dependency of streamscope`);
  return v;
}

export interface App {
  /** The app folder: node_modules/streamscope is the installed tarball. */
  dir: string;
  /** Writes a file into the app folder and returns its path. */
  file(name: string, content: string): string;
  remove(): void;
}

/** Installs the packed tarball and `deps` ({ name: range }) into a fresh temp app folder. */
export async function installApp(deps: Record<string, string> = {}, type: 'commonjs' | 'module' = 'commonjs'): Promise<App> {
  const tarball = await packOnce();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'streamscope-app-'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'streamscope-test-app', private: true, type }, null, 2));
  const specs = [tarball, ...Object.entries(deps).map(([n, v]) => `${n}@${v}`)];
  await run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...specs], {
    cwd: dir,
    timeout: 300_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return {
    dir,
    file(name, content) {
      const p = path.join(dir, name);
      fs.writeFileSync(p, content);
      return p;
    },
    remove() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Turns one of examples/*.ts into plain ESM in the app folder: types stripped (esbuild), and the
 * repository-relative imports (`../src/index.js`, `../src/adapters/hono.js`) replaced by the package's
 * public entry points (`streamscope`, `streamscope/hono`). Returns the file's path.
 */
export async function exampleAsApp(example: string, app: App, name: string): Promise<string> {
  const { transform } = await import('esbuild');
  const src = fs
    .readFileSync(path.join(ROOT, 'examples', example), 'utf8')
    .replace(/(['"])\.\.\/src\/index\.js\1/g, "'streamscope'")
    .replace(/(['"])\.\.\/src\/adapters\/([a-z0-9]+)\.js\1/g, "'streamscope/$2'");
  if (/\.\.\/src\//.test(src)) throw new Error(`${example} imports a private module of the repository`);
  const { code } = await transform(src, { loader: 'ts', format: 'esm', target: 'node20' });
  return app.file(name, code);
}
