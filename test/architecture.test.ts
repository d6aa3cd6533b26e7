import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The arrows run from the consumers to the core (docs/architecture.md): the core — the tracker, the
 * stream state, the response hook, track(), the core config and what they need — imports no consumer,
 * not even a type. Consumers register themselves with the tracker (src/setup.ts wires them for the
 * entry points). This reads the import graph of src/ with TypeScript's own pre-processor.
 */

const src = resolve(import.meta.dirname, '..', 'src');

/** The core: where a stream's lifecycle lives — every file under src/core/ (the folder shows it). */
const CORE = readdirSync(resolve(src, 'core'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => `core/${f}`);

/** What the core may also reach: shared leaves (types, errors), nothing that consumes a stream. */
const SHARED = ['types.ts', 'errors.ts'];

/** Consumers of the lifecycle, the optional runtime, and the wiring that installs them. */
const CONSUMERS = ['consumers/', 'runtime/', 'setup.ts'];

/** Relative imports of one file (value and type imports, re-exports, dynamic imports), as paths under src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(resolve(src, file), 'utf8');
  const info = ts.preProcessFile(text, true, true);
  const out: string[] = [];
  for (const f of info.importedFiles) {
    if (!f.fileName.startsWith('.')) continue;
    const target = resolve(dirname(resolve(src, file)), f.fileName).replace(/\.js$/, '.ts');
    out.push(relative(src, target));
  }
  return out;
}

/** Every file reachable from `roots` through relative imports, with the importer that first reached it. */
function closure(roots: string[]): Map<string, string> {
  const seen = new Map<string, string>(roots.map((r) => [r, '(core)']));
  const queue = [...roots];
  while (queue.length > 0) {
    const f = queue.shift() as string;
    for (const g of importsOf(f)) {
      if (seen.has(g)) continue;
      seen.set(g, f);
      queue.push(g);
    }
  }
  return seen;
}

const isConsumer = (f: string): boolean => CONSUMERS.some((c) => (c.endsWith('/') ? f.startsWith(c) : f === c));

describe('the core imports no consumer', () => {
  it('every listed core and consumer file exists (the lists follow the tree)', () => {
    for (const f of [...CORE, ...SHARED]) expect(existsSync(resolve(src, f)), f).toBe(true);
    for (const c of CONSUMERS) expect(existsSync(resolve(src, c)), c).toBe(true);
  });

  it('the core files, and everything they import, import no consumer module (not even a type)', () => {
    const reach = closure(CORE);
    const bad = [...reach].filter(([f]) => isConsumer(f)).map(([f, by]) => `${by} imports ${f}`);
    expect(bad).toEqual([]);
    // and nothing beyond the core and the shared leaves
    const other = [...reach.keys()].filter((f) => !CORE.includes(f) && !SHARED.includes(f));
    expect(other).toEqual([]);
  });

  it('the reader works: a consumer is seen importing the core', () => {
    expect(importsOf('consumers/metrics.ts')).toContain('core/tracker.ts');
    expect(closure(['setup.ts']).has('consumers/metrics.ts')).toBe(true);
  });
});

describe('private symbols live in one file', () => {
  /** Files allowed to name a symbol elsewhere: the inspector-evaluated protocol code (self-contained), Fastify's own keys. */
  const EXEMPT: Record<string, RegExp> = {
    'consumers/agent/protocol.ts': /Symbol\.for\('streamscope\.tracker'\)/,
    'adapters/fastify.ts': /Symbol\.for\('(skip-override|fastify\.display-name)'\)/,
  };
  function tsFiles(dir: string, out: string[] = []): string[] {
    for (const e of readdirSync(resolve(src, dir), { withFileTypes: true })) {
      const p = dir === '' ? e.name : `${dir}/${e.name}`;
      if (e.isDirectory()) tsFiles(p, out);
      else if (p.endsWith('.ts')) out.push(p);
    }
    return out;
  }

  it('every Symbol() and Symbol.for() of src/ is made in src/core/symbols.ts', () => {
    const offenders: string[] = [];
    for (const f of tsFiles('')) {
      if (f === 'core/symbols.ts') continue;
      const text = readFileSync(resolve(src, f), 'utf8');
      for (const m of text.matchAll(/Symbol(\.for)?\('[^']*'\)/g)) {
        const allowed = EXEMPT[f];
        if (allowed === undefined || !allowed.test(m[0])) offenders.push(`${f}: ${m[0]}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
