import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { registry } from '../src/errors.js';
import { DEFAULTS } from '../src/core/config.js';
import { SSE_DEFAULTS } from '../src/runtime/sse/options.js';
import { resolveGuards } from '../src/consumers/guards.js';
import { ROOT } from './helpers/child.js';

// Every environment variable, option and default the docs name is checked against the code, as
// docs-errors.test.ts does for error codes: a doc that names a variable the code never reads (it said
// `STREAMSCOPE_DEBUG=1`; the code reads `NODE_DEBUG=streamscope`) fails here, and so does a variable or an
// option the code has that no doc names.

function files(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    if (e === 'node_modules' || e === 'dist' || e.startsWith('.')) continue;
    const p = path.join(dir, e);
    if (statSync(p).isDirectory()) out.push(...files(p, ext));
    else if (ext.test(e)) out.push(p);
  }
  return out;
}

const docPaths = [...files(`${ROOT}/docs`, /\.md$/), `${ROOT}/README.md`];
const docs = docPaths.map((p) => ({ name: path.relative(ROOT, p), text: readFileSync(p, 'utf8') }));
const read = (dir: string): Array<{ name: string; text: string }> =>
  files(`${ROOT}/${dir}`, /\.(ts|mts|cts|js|mjs|cjs)$/).map((p) => ({ name: path.relative(ROOT, p), text: readFileSync(p, 'utf8') }));
/** The product: what runs in the user's process and the CLI. */
const product = [...read('src'), ...read('diagnostics')];
/** Also read by what the docs show running (examples) and the benchmarks. */
const shipped = [...product, ...read('examples'), ...read('bench')];

const sorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort();

/** Environment variables of streamscope's namespaces, and the few standard ones it reads. */
const ENV_NAME = /\b(STREAMSCOPE_[A-Z0-9_]*[A-Z0-9]|DIAG_[A-Z0-9_]*[A-Z0-9]|OTEL_[A-Z0-9_]*[A-Z0-9]|NODE_DEBUG|XDG_RUNTIME_DIR|SENTRY_PROFILER_LOGGING_MODE)\b/g;

/** Names the docs use as environment variables (error and warning codes of src/errors.ts are not). */
function documentedEnv(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const d of docs) {
    for (const m of d.text.matchAll(ENV_NAME)) {
      const name = m[1]!;
      if (name in registry) continue;
      out.set(name, [...(out.get(name) ?? []), d.name]);
    }
  }
  return out;
}

/** Variables a source reads: `process.env.X`, `env.X`, `env['X']`, `envSwitch('X')`, the guards' variable table. */
function readEnv(sources: Array<{ name: string; text: string }>): Set<string> {
  const out = new Set<string>();
  for (const s of sources) {
    for (const m of s.text.matchAll(/\benv(?:\.|\[\s*['"])([A-Z][A-Z0-9_]*)/g)) out.add(m[1]!);
    for (const m of s.text.matchAll(/\benvSwitch\(\s*['"]([A-Z][A-Z0-9_]*)['"]/g)) out.add(m[1]!);
    if (s.name === path.join('src', 'consumers', 'guards.ts')) for (const m of s.text.matchAll(/^\s+(STREAMSCOPE_GUARD_[A-Z0-9_]+):/gm)) out.add(m[1]!);
  }
  return out;
}

describe('environment variables: the docs against the code', () => {
  it('every variable the docs name is read by the code (STREAMSCOPE_*, DIAG_*, OTEL_*, NODE_DEBUG)', () => {
    const documented = documentedEnv();
    const reads = readEnv(shipped);
    // NODE_DEBUG is Node's: the code reads it through util.debuglog('streamscope')
    if (product.some((s) => /\bdebuglog\(\s*['"]streamscope['"]\s*\)/.test(s.text))) reads.add('NODE_DEBUG');
    const unread = [...documented].filter(([n]) => !reads.has(n) && n !== 'STREAMSCOPE_GUARD').map(([n, where]) => `${n} (${sorted(where).join(', ')})`);
    expect(unread).toEqual([]);
  });

  it('every variable the library and the CLI read is documented', () => {
    const documented = documentedEnv();
    const undocumented = sorted(readEnv(product)).filter((n) => !documented.has(n));
    expect(undocumented).toEqual([]);
  });

  it('NODE_DEBUG is documented with the section name the code passes to util.debuglog', () => {
    const sections = sorted(product.flatMap((s) => [...s.text.matchAll(/\bdebuglog\(\s*['"]([a-z0-9_-]+)['"]\s*\)/g)].map((m) => m[1]!)));
    expect(sections).toEqual(['streamscope']);
    for (const d of docs) {
      for (const m of d.text.matchAll(/NODE_DEBUG=([a-z0-9_,-]+)/g)) expect(m[1]!.split(','), `${d.name}: NODE_DEBUG=${m[1]}`).toContain('streamscope');
    }
  });
});

/** The property names of an exported interface of the public entry (src/index.ts), inherited ones included. */
let program: ts.Program | undefined;
function propertiesOf(typeName: string): { all: string[]; own: string[] } {
  program ??= ts.createProgram([`${ROOT}/src/index.ts`], { strict: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, noEmit: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const index = program.getSourceFile(`${ROOT}/src/index.ts`)!;
  const sym = checker.getExportsOfModule(checker.getSymbolAtLocation(index)!).find((s) => s.name === typeName);
  if (sym === undefined) throw new Error(`${typeName} is not exported by src/index.ts`);
  const target = sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym;
  const type = checker.getDeclaredTypeOfSymbol(target);
  const all = checker.getPropertiesOfType(type).map((p) => p.name);
  const own = (target.declarations ?? []).flatMap((d) => (ts.isInterfaceDeclaration(d) ? d.members.map((m) => m.name?.getText() ?? '') : [])).filter((n) => n !== '');
  return { all, own };
}

/** The rows of the first table in `doc` whose header starts with `| option |`: option name → the other cells. */
function optionTable(doc: string): Map<string, string[]> {
  const text = readFileSync(`${ROOT}/docs/${doc}`, 'utf8');
  const lines = text.split('\n');
  const at = lines.findIndex((l) => /^\| option \|/.test(l));
  expect(at, `docs/${doc} has an options table`).toBeGreaterThanOrEqual(0);
  const rows = new Map<string, string[]>();
  for (const line of lines.slice(at + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    const m = /^`([a-zA-Z]+)/.exec(cells[0]!);
    if (m) rows.set(m[1]!, cells.slice(1));
  }
  return rows;
}

/** A default cell as a value: `5000` → 5000, `1 MiB` → 1048576, `false` → false, `off`/`none`/`–` → undefined. */
function defaultOf(cell: string): unknown {
  const c = cell.replace(/`/g, '').trim();
  if (/^(off|none|–|-|'none')$/.test(c)) return undefined;
  if (c === 'false') return false;
  const mib = /^([\d.]+) MiB$/.exec(c);
  if (mib) return Number(mib[1]) * 1024 * 1024;
  if (/^[\d_,]+$/.test(c)) return Number(c.replace(/[_,]/g, ''));
  return c;
}

describe('options and defaults: the docs against the code', () => {
  const instrument = propertiesOf('InstrumentOptions');
  const sseProps = propertiesOf('SseOptions');

  it('docs/instrument.md: one row per InstrumentOptions property, and only those', () => {
    expect(sorted(optionTable('instrument.md').keys())).toEqual(sorted(instrument.all));
  });

  it('docs/sse.md: one row per option SseOptions declares (added to InstrumentOptions, or given its own meaning), and only those', () => {
    expect(sorted(optionTable('sse.md').keys())).toEqual(sorted(sseProps.own));
    // every other sse() option is an InstrumentOptions one, documented in docs/instrument.md
    expect(sseProps.all.filter((p) => !sseProps.own.includes(p) && !instrument.all.includes(p))).toEqual([]);
  });

  it('docs/guards.md: every guard option is an InstrumentOptions property, and its variable is the one register reads', () => {
    const rows = optionTable('guards.md');
    const guardSource = product.find((s) => s.name === path.join('src', 'consumers', 'guards.ts'))!.text;
    for (const [option, cells] of rows) {
      expect(instrument.all, option).toContain(option);
      const variable = /`(STREAMSCOPE_GUARD_[A-Z_]+)/.exec(cells[0]!)?.[1];
      expect(variable, `${option}: variable`).toBeDefined();
      expect(guardSource, `${option}: ${variable}`).toMatch(new RegExp(`${variable}: '${option}'`));
    }
    expect(resolveGuards({}), 'every guard is off by default, as the table says').toBeNull();
    for (const [option, cells] of rows) expect([undefined, 'none'], `${option} default ${cells[1]}`).toContain(defaultOf(cells[1]!) === "'none'" ? 'none' : defaultOf(cells[1]!));
  });

  it('every option of the other public options types is named in the docs (hub, stores, health, limits)', () => {
    const all = docs.map((d) => d.text).join('\n');
    const missing: string[] = [];
    for (const t of ['HubOptions', 'SubscribeOptions', 'MemoryStoreOptions', 'RedisStoreOptions', 'HealthOptions', 'RateLimitOptions', 'ShedOptions']) {
      const own = propertiesOf(t).own;
      expect(own.length, `${t} has options`).toBeGreaterThan(0);
      for (const p of own) if (!new RegExp(`\\b${p}\\b`).test(all)) missing.push(`${t}.${p}`);
    }
    expect(missing).toEqual([]);
  });

  it('the defaults the tables state are the code\'s', () => {
    const code: Record<string, unknown> = {
      ...DEFAULTS,
      ...SSE_DEFAULTS,
      trackAsync: false,
      captureStacks: false,
      writeGaps: false,
      prefix: "''",
      timeoutMs: undefined,
      retryMs: undefined,
      exposeErrors: false,
      headers: undefined,
      rateLimit: undefined,
      shed: undefined,
      maxBufferedBytes: undefined, // the instrument() guard: off
      deadPeerMs: undefined,
      stalledAction: undefined,
      zombieAction: undefined,
    };
    const mismatches: string[] = [];
    for (const [doc, overrides] of [
      ['instrument.md', {}],
      ['sse.md', { maxBufferedBytes: SSE_DEFAULTS.maxBufferedBytes }],
    ] as const) {
      for (const [option, cells] of optionTable(doc)) {
        const stated = defaultOf(cells[0]!);
        if (typeof stated === 'string' && !(option in code) && !(option in overrides)) continue; // prose: "framework template", "global tracer"
        const actual = option in overrides ? (overrides as Record<string, unknown>)[option] : code[option];
        const norm = stated === "'none'" ? undefined : stated;
        if (norm !== actual) mismatches.push(`${doc} ${option}: docs say ${cells[0]}, the code's default is ${String(actual)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });
});
