import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import type * as PromClient from 'prom-client';

/**
 * The Prometheus client module: `prom-client` (14, 15) or its successor `@prometheus-io/client` (the same API),
 * both optional peer dependencies, resolved from the application (see docs/metrics.md, "Which client").
 * `ClusterRegistry` is the successor's name for `AggregatorRegistry` (which it keeps, deprecated).
 */
export type PromClientModule = typeof PromClient & { ClusterRegistry?: typeof PromClient.AggregatorRegistry };

/** The package names streamscope records into, in the order of preference when nothing else decides. */
export const CLIENT_NAMES = ['@prometheus-io/client', 'prom-client'] as const;
export type ClientName = (typeof CLIENT_NAMES)[number];

interface Resolved {
  name: ClientName;
  mod: PromClientModule;
}

let cached: Resolved | undefined;
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

/** streamscope's own location: the last resort (a client installed beside streamscope only). */
function ownBase(): string {
  // CJS build: __filename; ESM build: import.meta.url (tsup leaves it empty in CJS, where it is not read).
  return typeof __filename === 'string' ? __filename : import.meta.url;
}

function load(base: string, name: ClientName): PromClientModule | undefined {
  try {
    const mod = createRequire(base)(name) as PromClientModule;
    if (mod !== null && typeof mod === 'object' && typeof mod.Counter === 'function' && typeof mod.Registry === 'function') return mod;
  } catch {
    /* not installed there */
  }
  return undefined;
}

/** The clients the application's nearest package.json declares (dependencies of any kind). */
function declaredBy(base: string): ClientName[] {
  let dir = path.dirname(base.startsWith('file:') ? new URL(base).pathname : base);
  for (;;) {
    const file = path.join(dir, 'package.json');
    try {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, Record<string, string> | undefined>;
      const deps = { ...pkg.devDependencies, ...pkg.optionalDependencies, ...pkg.dependencies };
      return CLIENT_NAMES.filter((n) => deps[n] !== undefined);
    } catch {
      /* no (readable) package.json here: look further up */
    }
    const up = path.dirname(dir);
    if (up === dir) return [];
    dir = up;
  }
}

/**
 * The order in which to try the two clients from one base: `STREAMSCOPE_PROM_CLIENT` when set; else the one
 * the app declares when it declares exactly one; else the successor first.
 */
function orderFor(base: string, env: string | undefined): readonly ClientName[] {
  if (env === 'prom-client' || env === '@prometheus-io/client') return [env];
  const declared = declaredBy(base);
  if (declared.length === 1) return [declared[0]!, ...CLIENT_NAMES.filter((n) => n !== declared[0])];
  return CLIENT_NAMES;
}

/** The rule of promClient() as a function of its inputs (exported for its unit test). */
export function resolveClient(bases: string[], env: string | undefined, loader = load): Resolved | undefined {
  for (const base of bases) {
    for (const name of orderFor(base, env)) {
      const mod = loader(base, name);
      if (mod !== undefined) return { name, mod };
    }
  }
  return undefined;
}

/**
 * The application's Prometheus client: the copy that `require()` returns in the app's main module (else from
 * the working directory, else beside streamscope), so that its global `register` is the one the app serves on
 * `/metrics`, whatever its version and however streamscope was installed (copied, linked, a second copy in a
 * sub-folder). Resolved once. Throws when no client is installed (and says so once on stderr).
 */
export function promClient(): PromClientModule {
  return resolved().mod;
}

/** The package name of the client promClient() answers. */
export function promClientName(): ClientName {
  return resolved().name;
}

function resolved(): Resolved {
  if (cached !== undefined) return cached;
  const env = process.env.STREAMSCOPE_PROM_CLIENT;
  const found = resolveClient([...appBases(), ownBase()], env === '' ? undefined : env);
  if (found !== undefined) {
    cached = found;
    return found;
  }
  if (!warned) {
    warned = true;
    // one clear line: without a client streamscope still tracks streams (findings, spans, diag), without metrics
    process.stderr.write(
      'streamscope: no Prometheus client is installed (prom-client or @prometheus-io/client), so there are no Prometheus metrics; npm install prom-client\n',
    );
  }
  throw new Error('streamscope: no Prometheus client is installed (npm install prom-client, or @prometheus-io/client)');
}

/**
 * The client whose `Registry` class made `registry` (a registry passed by the app may come from either client,
 * whichever promClient() picked): its metric classes go into it. Falls back to promClient().
 */
export function promClientFor(registry: object | undefined): PromClientModule {
  if (registry !== undefined) {
    for (const base of [...appBases(), ownBase()]) {
      for (const name of CLIENT_NAMES) {
        const mod = load(base, name);
        if (mod !== undefined && registry instanceof mod.Registry) return mod;
      }
    }
  }
  return promClient();
}

/** The cluster-aggregating registry class of a client: `ClusterRegistry`, or `AggregatorRegistry` (prom-client). */
export function clusterRegistryClass(mod: PromClientModule): typeof PromClient.AggregatorRegistry {
  return mod.ClusterRegistry ?? mod.AggregatorRegistry;
}
