import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './helpers/child.js';
import { installApp, packOnce, type App } from './helpers/tarball.js';

const run = promisify(execFile);
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';

/**
 * The npm registry has an unrelated package named `diag`: `npx diag …` on a host without streamscope would
 * download and run it. The package ships a bin named after itself, and no doc shows a bare `npx diag`.
 */
describe('the CLI runs under the package name', () => {
  const dirs: string[] = [];
  const apps: App[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    for (const a of apps) a.remove();
  });

  it('from an empty folder, `npx -p <tarball> streamscope --help` runs streamscope’s CLI', async () => {
    const tgz = await packOnce();
    const empty = mkdtempSync(join(tmpdir(), 'streamscope-npx-'));
    dirs.push(empty);
    const cache = mkdtempSync(join(tmpdir(), 'streamscope-npx-cache-'));
    dirs.push(cache);
    const { stdout } = await run(npx, ['--yes', '--prefer-offline', '-p', tgz, 'streamscope', '--help'], {
      cwd: empty,
      timeout: 240_000,
      env: { ...process.env, npm_config_cache: join(cache, 'npm') },
    });
    expect(stdout).toMatch(/^Usage: streamscope /m);
    expect(stdout).toMatch(/capture a live Node\.js process/);
    for (const cmd of ['ls', 'top', 'capture', 'analyze', 'doctor']) expect(stdout).toMatch(new RegExp(`^\\s+${cmd}\\b`, 'm'));
  }, 300_000);

  it('where the package is installed, both `npx streamscope` and the short `diag` run it', async () => {
    const app = await installApp({});
    apps.push(app);
    const a = await run(npx, ['--no-install', 'streamscope', '--version'], { cwd: app.dir, timeout: 60_000 });
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    expect(a.stdout.trim()).toBe(version);
    const b = await run(join(app.dir, 'node_modules/.bin/diag'), ['--help'], { cwd: app.dir, timeout: 60_000 });
    expect(b.stdout).toMatch(/^Usage: diag /m);
    // a usage error names the command the user typed
    const err = await run(join(app.dir, 'node_modules/.bin/streamscope'), ['analyze'], { cwd: app.dir, timeout: 60_000 }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toMatch(/^streamscope: /);
  }, 300_000);

  it('no doc or example shows a bare `npx diag` (it can run an unrelated package)', () => {
    const files: string[] = [join(ROOT, 'README.md'), join(ROOT, 'alerts/runbooks.md')];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (name === 'node_modules') continue;
        if (statSync(p).isDirectory()) walk(p);
        else if (/\.(md|ts|mjs|cjs|js|json|html)$/.test(name)) files.push(p);
      }
    };
    walk(join(ROOT, 'docs'));
    walk(join(ROOT, 'examples'));
    walk(join(ROOT, 'src'));
    walk(join(ROOT, 'diagnostics'));
    const bad = files.flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .map((line, i) => ({ line, at: `${relative(ROOT, f)}:${i + 1}` }))
        .filter(({ line }) => /\bnpx\s+(--?[\w-]+\s+)*diag\b/.test(line)),
    );
    expect(bad.map((b) => `${b.at}: ${b.line.trim()}`)).toEqual([]);
  });
});
