import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { codes, registry, type ErrorSpec } from '../src/errors.js';
import { ROOT } from './helpers/child.js';
import { AGENT_ERROR_CODES } from '../src/consumers/agent/protocol.js';

const doc = readFileSync(`${ROOT}/docs/errors.md`, 'utf8');
const entries = Object.entries(registry) as [string, ErrorSpec][];

/** The rows of the table under `## heading`: first cell's code → the other cells. */
function table(heading: string): Map<string, string[]> {
  const start = doc.indexOf(`\n## ${heading}\n`);
  expect(start, `docs/errors.md has a "## ${heading}" section`).toBeGreaterThanOrEqual(0);
  const end = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, end < 0 ? undefined : end);
  const rows = new Map<string, string[]>();
  for (const line of section.split('\n')) {
    const m = /^\| `(STREAMSCOPE_[A-Z0-9_]+)`[^|]*\|(.*)\|$/.exec(line);
    if (m) rows.set(m[1]!, m[2]!.split('|').map((c) => c.trim()));
  }
  return rows;
}

const sorted = (xs: Iterable<string>): string[] => [...xs].sort();

describe('docs/errors.md against the registry (src/errors.ts)', () => {
  it('every code is documented somewhere, and every documented code is in the registry', () => {
    const documented = new Set([...doc.matchAll(/^\| `(STREAMSCOPE_[A-Z0-9_]+)`/gm)].map((m) => m[1]!));
    expect(sorted(documented)).toEqual(sorted(Object.keys(registry)));
    expect(sorted(Object.keys(codes))).toEqual(sorted(Object.keys(registry)));
  });

  it('thrown errors: one row each, and the row says when it is a TypeError', () => {
    const rows = table('Thrown errors');
    expect(sorted(rows.keys())).toEqual(sorted(entries.filter(([, s]) => s.thrown !== undefined).map(([c]) => c)));
    for (const [code, s] of entries) {
      if (s.thrown === undefined) continue;
      const line = doc.split('\n').find((l) => l.startsWith(`| \`${code}\``))!;
      expect(line.includes('(a `TypeError`)'), code).toBe(s.thrown === 'TypeError');
    }
  });

  it('HTTP error answers: one row each, with the status the runtime sends', () => {
    const rows = table('HTTP error answers');
    expect(sorted(rows.keys())).toEqual(sorted(entries.filter(([, s]) => s.http !== undefined).map(([c]) => c)));
    for (const [code, cells] of rows) expect(Number(cells[0]), code).toBe((registry[code as keyof typeof registry] as ErrorSpec).http);
  });

  it('process warnings: one row each', () => {
    const rows = table('Process warnings');
    expect(sorted(rows.keys())).toEqual(sorted(entries.filter(([, s]) => s.warning === true).map(([c]) => c)));
  });

  it("diag's error classes: one row each, with their exit code", () => {
    const rows = table('`diag` exit codes');
    expect(sorted(rows.keys())).toEqual(sorted(entries.filter(([, s]) => s.exit !== undefined).map(([c]) => c)));
    for (const [code, cells] of rows) expect(Number(cells[1]), code).toBe((registry[code as keyof typeof registry] as ErrorSpec).exit);
  });

  it("agent protocol errors: one row per code the agent answers with (src/consumers/agent/protocol.ts)", () => {
    const start = doc.indexOf('\n## Agent protocol errors\n');
    const section = doc.slice(start, doc.indexOf('\n## ', start + 1));
    const documented = [...section.matchAll(/^\| `(E[A-Z]+)` \|/gm)].map((m) => m[1]!);
    expect(sorted(documented)).toEqual(sorted(Object.keys(AGENT_ERROR_CODES)));
  });

  it('every entry has a kind', () => {
    for (const [code, s] of entries) expect(s.thrown ?? s.warning ?? s.http ?? s.exit, code).toBeDefined();
  });
});

describe('the registry is the only source', () => {
  const files = (dir: string): string[] =>
    readdirSync(dir).flatMap((n) => {
      const p = `${dir}/${n}`;
      return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
    });
  const sources = [...files(`${ROOT}/src`), ...files(`${ROOT}/diagnostics`)].filter((f) => !f.endsWith('/src/errors.ts'));

  it('no warning, TypeError or HTTP error body is made outside src/errors.ts', () => {
    const offenders: string[] = [];
    for (const f of sources) {
      const text = readFileSync(f, 'utf8');
      const rel = f.slice(ROOT.length + 1);
      if (/process\.emitWarning\(/.test(text)) offenders.push(`${rel}: process.emitWarning`);
      if (/new TypeError\(/.test(text)) offenders.push(`${rel}: new TypeError`);
      if (/error: \{ code: /.test(text) && !rel.startsWith('src/consumers/agent/') && !rel.startsWith('diagnostics/')) offenders.push(`${rel}: an error body`);
    }
    expect(offenders).toEqual([]);
  });

  it('every code used in src/ and diagnostics/ is in the registry', () => {
    const used = new Set<string>();
    for (const f of sources) for (const m of readFileSync(f, 'utf8').matchAll(/'(STREAMSCOPE_(?:ERR|DIAG)_[A-Z0-9_]+)'/g)) used.add(m[1]!);
    for (const code of used) expect(Object.keys(registry), code).toContain(code);
  });
});

describe('thrown TypeErrors carry their registry code', () => {
  it('instrument(), onFinding() and instrumentFetch() with a non-function', async () => {
    const { instrument, onFinding } = await import('../src/index.js');
    const { instrumentFetch } = await import('../src/adapters/hono.js');
    for (const f of [() => instrument(42 as never), () => onFinding('x' as never), () => instrumentFetch(null as never)]) {
      let caught: unknown;
      try {
        f();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(TypeError);
      expect(caught).toMatchObject({ code: 'STREAMSCOPE_ERR_INVALID_ARG', message: expect.stringMatching(/^\w+\(\w+\): \w+ must be a function$/) });
    }
  });
});
