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

/**
 * The core owns a stream's state (docs/architecture.md): consumers, the runtime, the adapters and the entry points
 * read a `StreamState` and report through the tracker's methods (`markError`, `handlerRuns`, `stateOf`,
 * `setTraceId`, `onFinding`, `useAsyncContext`, …); they never assign its fields, reach a response's state
 * through the core's `kState`, call the tracker's lifecycle transitions or change its lists. Inside the core, the
 * outcome and the flags it is made from are assigned in src/core/outcome.ts only, the phase and what decides a
 * release in src/core/tracker.ts only. Read with TypeScript's type checker, so `rm.bytes += n` on a route's
 * metrics is not mistaken for a stream's `s.bytes`.
 */
describe('only the core changes a stream\'s state', () => {
  const root = resolve(src, '..');
  const parsed = ts.getParsedCommandLineOfConfigFile(resolve(root, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
  const all = (function walk(dir: string, out: string[]): string[] {
    for (const e of readdirSync(resolve(src, dir), { withFileTypes: true })) {
      const p = dir === '' ? e.name : `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p, out);
      else if (p.endsWith('.ts')) out.push(p);
    }
    return out;
  })('', []);
  const program = ts.createProgram(
    all.map((f) => resolve(src, f)),
    parsed?.options ?? {},
  );
  const checker = program.getTypeChecker();
  const inFile = (d: ts.Declaration, file: string): boolean => d.getSourceFile().fileName === resolve(src, file);

  /** Is this expression (or any member of its union) an instance of the class `name` declared in `file`? */
  function isClass(e: ts.Expression, file: string, name: string): boolean {
    const t = checker.getNonNullableType(checker.getTypeAtLocation(e));
    return (t.isUnion() ? t.types : [t]).some((x) => {
      const sym = x.getSymbol();
      return sym?.getName() === name && (sym.declarations ?? []).some((d) => inFile(d, file));
    });
  }
  const isState = (e: ts.Expression): boolean => isClass(e, 'core/stream-state.ts', 'StreamState');
  const isTracker = (e: ts.Expression): boolean => isClass(e, 'core/tracker.ts', 'Tracker');
  /** The core's `kState` (not sse's own `kSseState`, imported there under the same local name). */
  function isCoreKState(id: ts.Identifier): boolean {
    let sym = checker.getSymbolAtLocation(id);
    if (sym === undefined) return false;
    if (sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
    return sym.getName() === 'kState' && (sym.declarations ?? []).some((d) => inFile(d, 'core/symbols.ts'));
  }

  /** What only the tracker's own transitions may call. */
  const TRANSITIONS = new Set(['discard', 'markOpen', 'opened', 'markClosed', 'settle', 'release', 'releaseLetGo', 'wroteAfterClose', 'emit', 'sweep']);
  /** A consumer's own data on a stream, and the questions it may ask of it. */
  const STATE_API = new Set(['slot', 'setSlot', 'hasFinding']);
  const MUTATORS = new Set(['add', 'delete', 'set', 'clear', 'push', 'pop', 'shift', 'unshift', 'splice']);
  const isAssignment = (k: ts.SyntaxKind): boolean =>
    k === ts.SyntaxKind.EqualsToken || (k >= ts.SyntaxKind.FirstCompoundAssignment && k <= ts.SyntaxKind.LastCompoundAssignment);

  interface Write {
    file: string;
    line: number;
    text: string;
    /** the StreamState field assigned, when it is one */
    field?: string;
  }

  /** Every write to core state in `file`: assignments, ++/--, delete, `[kState]`, transitions, list changes. */
  function writesIn(file: string): Write[] {
    const sf = program.getSourceFile(resolve(src, file));
    if (sf === undefined) throw new Error(`not in the program: ${file}`);
    const out: Write[] = [];
    const at = (n: ts.Node, field?: string): void => {
      const w: Write = { file, line: sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1, text: n.getText(sf).slice(0, 80) };
      if (field !== undefined) w.field = field;
      out.push(w);
    };
    const target = (n: ts.Node, whole: ts.Node): void => {
      while (ts.isParenthesizedExpression(n)) n = n.expression;
      if (ts.isPropertyAccessExpression(n) || ts.isElementAccessExpression(n)) {
        if (isState(n.expression)) at(whole, ts.isPropertyAccessExpression(n) ? n.name.text : '[]');
        else if (isTracker(n.expression)) at(whole);
      }
    };
    const visit = (n: ts.Node): void => {
      if (ts.isBinaryExpression(n) && isAssignment(n.operatorToken.kind)) target(n.left, n);
      else if ((ts.isPrefixUnaryExpression(n) || ts.isPostfixUnaryExpression(n)) && (n.operator === ts.SyntaxKind.PlusPlusToken || n.operator === ts.SyntaxKind.MinusMinusToken)) target(n.operand, n);
      else if (ts.isDeleteExpression(n)) target(n.expression, n);
      else if (ts.isIdentifier(n) && isCoreKState(n) && !ts.isImportSpecifier(n.parent)) at(n.parent);
      else if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression)) {
        const recv = n.expression.expression;
        const name = n.expression.name.text;
        if (isState(recv) && !STATE_API.has(name)) at(n);
        else if (isTracker(recv) && TRANSITIONS.has(name)) at(n);
        else if (MUTATORS.has(name) && ts.isPropertyAccessExpression(recv) && isTracker(recv.expression)) at(n);
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
    return out;
  }

  const fmt = (w: Write): string => `${w.file}:${w.line}: ${w.text}`;

  it('the reader works: it sees the per-write path bump a stream\'s numbers and the tracker set its phase', () => {
    const hook = writesIn('core/response-hook.ts');
    expect(hook.some((w) => w.field === 'writes')).toBe(true);
    expect(hook.some((w) => w.field === 'bytes')).toBe(true);
    expect(writesIn('core/tracker.ts').some((w) => w.field === 'phase')).toBe(true);
    // and a route's own tallies are not a stream's
    expect(writesIn('consumers/metrics.ts').map(fmt)).toEqual([]);
  });

  it('nothing outside src/core/ writes a stream\'s state, reads `[kState]`, calls a transition or changes the tracker\'s lists', () => {
    const outside = all.filter((f) => !f.startsWith('core/'));
    expect(outside.length).toBeGreaterThan(20);
    expect(outside.flatMap(writesIn).map(fmt)).toEqual([]);
  });

  it('inside the core, the outcome and its flags are assigned in core/outcome.ts only; the phase and the release rule\'s inputs in core/tracker.ts only', () => {
    const OWNER: Record<string, string> = {
      outcome: 'core/outcome.ts',
      errored: 'core/outcome.ts',
      timedOut: 'core/outcome.ts',
      serverDestroyed: 'core/outcome.ts',
      clientClosed: 'core/outcome.ts',
      phase: 'core/tracker.ts',
      handlerSettled: 'core/tracker.ts',
      released: 'core/tracker.ts',
      writesAfterClose: 'core/tracker.ts',
      lastWriteAt: 'core/tracker.ts',
      closedAt: 'core/tracker.ts',
    };
    const core = all.filter((f) => f.startsWith('core/') && f !== 'core/stream-state.ts');
    const misplaced = core.flatMap(writesIn).filter((w) => w.field !== undefined && OWNER[w.field] !== undefined && OWNER[w.field] !== w.file);
    expect(misplaced.map(fmt)).toEqual([]);
    // each owner does assign what it owns (the table follows the code)
    const owned = new Set(core.flatMap(writesIn).filter((w) => w.field !== undefined && OWNER[w.field] === w.file).map((w) => w.field));
    expect([...owned].sort()).toEqual(Object.keys(OWNER).sort());
  });
});
