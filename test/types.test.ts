/**
 * The public types, as users get them (issue 22):
 * - test/types/*.test-d.ts (ESM) and *.test-d.cts (CommonJS) compile, with `tsc` (strict, node16 resolution,
 *   skipLibCheck off, so streamscope's own .d.ts files are checked too), in an app folder where `streamscope` is
 *   the installed tarball next to the frameworks and their type packages. `expectTypeOf` states what a
 *   signature gives; `// @ts-expect-error` what must not compile (an unused one is an error).
 * - the built .d.ts files are an interface for users, not a dump of the implementation: every declaration in
 *   them is exported by an entry point (so every type a public signature names can be imported), and none of
 *   the implementation's types appears.
 * Needs `npm run build` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { ROOT } from './helpers/child.js';
import { devVersion, installApp, installedVersion, type App } from './helpers/tarball.js';

const run = promisify(execFile);
const TYPES = path.join(ROOT, 'test', 'types');

/** Implementation types that must never reach a user's editor. */
const INTERNAL = [
  'StreamState',
  'StreamConfig',
  'ResolvedConfig',
  'ResolvedSse',
  'MetricsSet',
  'RouteMetrics',
  'HistogramChild',
  'StreamHistogram',
  'TokenBuckets',
  'Shedder',
  'Limits',
  'GuardConfig',
  'WriteGuard',
  'StackHolder',
  'H2StreamLike',
  'Phase',
  'Tracker',
  'kSsePush',
  'kSseOpen',
  'kSseOnClose',
  'kSseState',
  'kSseNeedsDrain',
  'registry',
];

interface DtsFile {
  file: string;
  /** Top-level declarations (interfaces, types, classes, functions, variables, enums, namespaces). */
  declared: string[];
  /** Local name → exported name. */
  exported: Map<string, string>;
  /** Names imported from another file of the build: [their name in that file, local name, that file]. */
  imports: Array<{ name: string; local: string; from: string }>;
  /** Declared names, and names used as a type or value. */
  identifiers: Set<string>;
  /** Modules imported from outside the build (`node:http`, `express`). */
  packages: Set<string>;
}

function parseDts(file: string): DtsFile {
  const sf = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: DtsFile = { file, declared: [], exported: new Map(), imports: [], identifiers: new Set(), packages: new Set() };
  const exportedDirectly = (s: ts.Statement): boolean => (ts.canHaveModifiers(s) ? (ts.getModifiers(s) ?? []) : []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  for (const s of sf.statements) {
    const names: string[] = [];
    if (ts.isInterfaceDeclaration(s) || ts.isTypeAliasDeclaration(s) || ts.isEnumDeclaration(s)) names.push(s.name.text);
    else if ((ts.isClassDeclaration(s) || ts.isFunctionDeclaration(s)) && s.name) names.push(s.name.text);
    else if (ts.isModuleDeclaration(s) && ts.isIdentifier(s.name)) names.push(s.name.text);
    else if (ts.isVariableStatement(s)) for (const d of s.declarationList.declarations) if (ts.isIdentifier(d.name)) names.push(d.name.text);
    for (const n of names) {
      out.declared.push(n);
      if (exportedDirectly(s)) out.exported.set(n, n);
    }
    if (ts.isExportDeclaration(s) && s.exportClause && ts.isNamedExports(s.exportClause)) {
      const from = s.moduleSpecifier && ts.isStringLiteral(s.moduleSpecifier) ? s.moduleSpecifier.text : undefined;
      for (const e of s.exportClause.elements) {
        const name = (e.propertyName ?? e.name).getText(sf);
        if (from === undefined) out.exported.set(name, e.name.getText(sf));
        else if (from.startsWith('.')) {
          // `export { b as Severity } from './chunk.js'`: an import and an export in one
          const local = `(re-export ${e.name.getText(sf)})`;
          out.imports.push({ name, local, from: path.resolve(path.dirname(file), from) });
          out.exported.set(local, e.name.getText(sf));
        }
      }
    }
    if (ts.isImportDeclaration(s) && ts.isStringLiteral(s.moduleSpecifier) && !s.moduleSpecifier.text.startsWith('.')) out.packages.add(s.moduleSpecifier.text);
    if (ts.isImportDeclaration(s) && ts.isStringLiteral(s.moduleSpecifier) && s.moduleSpecifier.text.startsWith('.')) {
      const bindings = s.importClause?.namedBindings;
      if (bindings && ts.isNamedImports(bindings)) {
        for (const e of bindings.elements) out.imports.push({ name: (e.propertyName ?? e.name).getText(sf), local: e.name.text, from: path.resolve(path.dirname(file), s.moduleSpecifier.text) });
      }
    }
  }
  // Names used as types or values (`Foo`, `typeof foo`, `[kFoo]`), not property names such as `registry?:`.
  const visit = (n: ts.Node): void => {
    if (ts.isIdentifier(n)) {
      const p = n.parent;
      if (ts.isTypeReferenceNode(p) || ts.isQualifiedName(p) || ts.isTypeQueryNode(p) || ts.isComputedPropertyName(p) || ts.isExpressionWithTypeArguments(p)) out.identifiers.add(n.text);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  for (const d of out.declared) out.identifiers.add(d);
  return out;
}

describe('public .d.ts files', () => {
  for (const [flavour, dir, ext] of [
    ['ESM', 'dist/esm', '.d.ts'],
    ['CJS', 'dist/cjs', '.d.cts'],
  ] as const) {
    it(`${flavour}: every declaration is exported by an entry point, and no implementation type appears`, () => {
      const files = fs.readdirSync(path.join(ROOT, dir)).filter((f) => f.endsWith(ext)).map((f) => parseDts(path.join(ROOT, dir, f)));
      const entries = ['index', 'register', 'express', 'fastify', 'koa', 'hono', 'client'].map((e) => path.join(ROOT, dir, e + ext));
      expect(files.map((f) => f.file)).toEqual(expect.arrayContaining(entries));
      const byFile = new Map(files.map((f) => [f.file.replace(/\.d\.c?ts$/, ''), f]));
      // What users can import: every name an entry point exports, followed through shared chunks to its declaration.
      const origin = (f: DtsFile, local: string): string => {
        const imp = f.imports.find((i) => i.local === local);
        if (imp === undefined) return `${f.file}#${local}`;
        const from = byFile.get(imp.from.replace(/\.c?js$/, ''));
        if (from === undefined) return `${imp.from}#${imp.name}`;
        const declaredAs = [...from.exported].find(([, exportedAs]) => exportedAs === imp.name)?.[0] ?? imp.name;
        return origin(from, declaredAs);
      };
      const publicDecls = new Set<string>();
      for (const f of files.filter((x) => entries.includes(x.file))) for (const local of f.exported.keys()) publicDecls.add(origin(f, local));
      const hidden: string[] = [];
      for (const f of files) for (const d of f.declared) if (!publicDecls.has(`${f.file}#${d}`)) hidden.push(`${path.basename(f.file)}: ${d}`);
      expect(hidden, 'declared in the public .d.ts but not exported by any entry point (a public signature names it)').toEqual([]);
      const leaked = files.flatMap((f) => INTERNAL.filter((n) => f.identifiers.has(n)).map((n) => `${path.basename(f.file)}: ${n}`));
      expect(leaked, 'implementation types in the public .d.ts').toEqual([]);
    });

    it(`${flavour}: every package the .d.ts files import is a dependency or a peer; framework types are optional peers, imported by their adapter only`, () => {
      const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
        dependencies?: Record<string, string>;
        peerDependencies?: Record<string, string>;
        peerDependenciesMeta?: Record<string, { optional?: boolean }>;
      };
      const packageOf = (spec: string): string => spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');
      /** The package that provides a module's types: itself, or its DefinitelyTyped package. */
      const provider = (name: string): string | undefined =>
        [name, `@types/${name.startsWith('@') ? name.slice(1).replace('/', '__') : name}`].find((n) => n in (pkg.dependencies ?? {}) || n in (pkg.peerDependencies ?? {}));
      const problems: string[] = [];
      for (const f of fs.readdirSync(path.join(ROOT, dir)).filter((x) => x.endsWith(ext))) {
        for (const spec of parseDts(path.join(ROOT, dir, f)).packages) {
          if (spec.startsWith('node:')) continue;
          const name = packageOf(spec);
          const by = provider(name);
          if (by === undefined) problems.push(`${f} imports ${spec}: neither a dependency nor a peer`);
          else if (['express', 'fastify', 'koa', 'hono'].includes(name) || by.startsWith('@types/')) {
            if (pkg.peerDependenciesMeta?.[by]?.optional !== true) problems.push(`${f} imports ${spec}: ${by} is not an optional peer`);
            if (f.replace(/\.d\.c?ts$/, '') !== name) problems.push(`${f} imports ${spec}: only streamscope/${name}'s types may`);
          }
        }
      }
      expect(problems).toEqual([]);
    });
  }
});

describe('type tests of every entry point, ESM and CJS, against the installed tarball', () => {
  let app: App;
  beforeAll(async () => {
    const deps: Record<string, string> = { 'expect-type': installedVersion('expect-type') };
    for (const n of ['@types/node', 'express', '@types/express', 'fastify', 'koa', '@types/koa', '@koa/router', 'hono', '@hono/node-server']) deps[n] = devVersion(n);
    app = await installApp(deps, 'module');
    for (const f of fs.readdirSync(TYPES)) fs.copyFileSync(path.join(TYPES, f), path.join(app.dir, f));
    app.file(
      'tsconfig.json',
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'Node16',
          moduleResolution: 'Node16',
          lib: ['ES2023'],
          types: ['node'],
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          esModuleInterop: true,
        },
        include: ['*.test-d.ts', '*.test-d.cts'],
      }),
    );
  }, 400_000);
  afterAll(() => app?.remove());

  it('test/types/*.test-d.ts and *.test-d.cts compile', async () => {
    expect(fs.readdirSync(TYPES).sort()).toEqual(['adapters.test-d.cts', 'adapters.test-d.ts', 'client.test-d.ts', 'index.test-d.cts', 'index.test-d.ts']);
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const out = await run(process.execPath, [tsc, '-p', app.dir, '--pretty', 'false'], { cwd: app.dir, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 }).then(
      (r) => r.stdout + r.stderr,
      (err: { stdout?: string; stderr?: string; message: string }) => `${err.stdout ?? ''}${err.stderr ?? ''}` || err.message,
    );
    // Errors inside other packages' own .d.ts files (with skipLibCheck off, e.g. @types/koa against a newer
    // content-disposition, hono's WebSocket helper without the DOM lib) are theirs, not ours: left out.
    const ours = out
      .split('\n')
      .filter((l) => l.trim() !== '' && !/^\s/.test(l))
      .filter((l) => !l.startsWith('node_modules/') || l.startsWith('node_modules/streamscope/'));
    expect(ours, out).toEqual([]);
  }, 300_000);
});
