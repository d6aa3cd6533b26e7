import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import type * as PromClient from 'prom-client';

/** The prom-client module: a peer dependency, resolved from the application (see docs/metrics.md). */
export type PromClientModule = typeof PromClient;

let cached: PromClientModule | undefined;
let warned = false;

/** Where the application's own `require('prom-client')` resolves from: its main module, then the cwd. */
function appBases(): string[] {
  const out: string[] = [];
  const main = process.argv[1];
  if (typeof main === 'string' && main !== '') {
    try {
      // Node resolves the main module's imports from its real path (unless --preserve-symlinks-main).
      out.push(fs.realpathSync(main));
    } catch {
      out.push(path.resolve(main));
    }
  }
  out.push(path.join(process.cwd(), 'noop.js'));
  return out;
}

/** streamscope's own location: the last resort (prom-client installed beside streamscope only). */
function ownBase(): string {
  // CJS build: __filename; ESM build: import.meta.url (tsup leaves it empty in CJS, where it is not read).
  return typeof __filename === 'string' ? __filename : import.meta.url;
}

/**
 * The application's prom-client: the copy that `require('prom-client')` returns in the app's main module
 * (else from the working directory, else beside streamscope), so that its global `register` is the one the
 * app serves on `/metrics`, whatever its version (14 or 15) and however streamscope was installed (copied,
 * linked, a second copy in a sub-folder). Resolved once. Throws when prom-client is not installed.
 */
export function promClient(): PromClientModule {
  if (cached !== undefined) return cached;
  let last: unknown;
  for (const base of [...appBases(), ownBase()]) {
    try {
      const mod = createRequire(base)('prom-client') as PromClientModule;
      if (mod !== null && typeof mod === 'object' && typeof mod.Counter === 'function') {
        cached = mod;
        return mod;
      }
    } catch (err) {
      last = err;
    }
  }
  const err = new Error(`streamscope: prom-client is not installed (npm i prom-client); ${String((last as Error)?.message ?? last)}`);
  if (!warned) {
    warned = true;
    // one clear line: without its peer dependency streamscope still tracks streams, but has no metrics
    process.stderr.write('streamscope: prom-client is not installed, so there are no Prometheus metrics (npm install prom-client)\n');
  }
  throw err;
}
