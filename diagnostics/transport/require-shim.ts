/**
 * The CLI is bundled to ESM with its CommonJS dependencies (commander, ws), whose `require('events')` and
 * the like esbuild routes through a global `require`. This gives the CLI process (never the user's) one,
 * before any of them loads: cli.ts imports this module first and uses its export, so the bundler keeps it
 * (package.json `sideEffects` would otherwise drop a bare side-effect import). A tsup `banner` would do the same.
 */
import { createRequire } from 'node:module';

function install(): boolean {
  const g = globalThis as unknown as { require?: NodeJS.Require };
  g.require ??= createRequire(import.meta.url);
  return true;
}

export const requireInstalled = install();
