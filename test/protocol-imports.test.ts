/**
 * `diag` shares exactly one module with the agent: src/consumers/agent/protocol.ts. Nothing in diagnostics/ may import
 * (directly or through another file it imports) any other file of src/consumers/agent/, and the protocol module itself
 * imports Node built-ins only, so it never drags the agent (or the library) into the CLI.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/child.js';

const PROTOCOL = path.join(ROOT, 'src/consumers/agent/protocol.ts');
const AGENT = path.join(ROOT, 'src/consumers/agent') + path.sep;

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Module specifiers of static imports/exports (type-only included) and dynamic `import()` with a literal. */
function specifiers(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s*['"]([^'"]+)['"]/g)) out.push(m[1]!);
  for (const m of text.matchAll(/(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g)) out.push(m[1]!);
  for (const m of text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!);
  return out;
}

function resolveTs(from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const p = path.resolve(path.dirname(from), spec).replace(/\.(m|c)?js$/, '');
  for (const c of [`${p}.ts`, path.join(p, 'index.ts')]) if (fs.existsSync(c)) return c;
  return null;
}

describe('diag imports the protocol module, not the agent', () => {
  it('no file of diagnostics/, nor anything it imports, reaches into src/consumers/agent/ beyond protocol.ts', () => {
    const seen = new Set<string>();
    const offenders: string[] = [];
    const queue = files(path.join(ROOT, 'diagnostics'));
    while (queue.length > 0) {
      const f = queue.pop()!;
      if (seen.has(f)) continue;
      seen.add(f);
      for (const spec of specifiers(f)) {
        const target = resolveTs(f, spec);
        if (target === null) continue;
        if (target.startsWith(AGENT) && target !== PROTOCOL) offenders.push(`${path.relative(ROOT, f)} → ${path.relative(ROOT, target)}`);
        queue.push(target);
      }
    }
    expect(seen.has(PROTOCOL)).toBe(true);
    expect(offenders).toEqual([]);
  });

  it('the protocol module imports Node built-ins only', () => {
    expect(specifiers(PROTOCOL).filter((s) => !s.startsWith('node:'))).toEqual([]);
  });

  it('the import scan sees what it must (a check that can fail)', () => {
    expect(specifiers(path.join(ROOT, 'src/consumers/agent/server.ts'))).toContain('./protocol.js');
    expect(specifiers(path.join(ROOT, 'src/consumers/agent/facts.ts'))).toEqual(expect.arrayContaining(['node:fs', './protocol.js']));
  });
});
