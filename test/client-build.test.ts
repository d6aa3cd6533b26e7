import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, resolve } from 'node:path';
import { ROOT } from './helpers/child.js';

/**
 * `streamscope/client` is browser-safe: its built files (ESM and CJS), and every chunk they load, import no
 * `node:` module nor a Node builtin by its bare name; the only packages they load are eventsource-parser and
 * crc. Needs `npm run build` first.
 */

const BUILTINS = new Set(builtinModules);

/** Every module specifier a built file loads (import/export from, import(), require()). */
function specifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["']([^"']+)["']/g)) out.push(m[1]!);
  return out;
}

/** The files reachable from `entry` through relative specifiers, and the bare specifiers they load. */
function closure(entry: string): { files: string[]; bare: Set<string> } {
  const files: string[] = [];
  const bare = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const f = queue.shift()!;
    if (files.includes(f)) continue;
    files.push(f);
    for (const s of specifiers(readFileSync(f, 'utf8'))) {
      if (s.startsWith('.')) queue.push(resolve(dirname(f), s));
      else bare.add(s);
    }
  }
  return { files, bare };
}

describe('streamscope/client build', () => {
  for (const entry of ['dist/esm/client.js', 'dist/cjs/client.cjs']) {
    it(`${entry} and its chunks load no Node builtin; only eventsource-parser and crc`, () => {
      const path = `${ROOT}/${entry}`;
      expect(existsSync(path), 'run npm run build first').toBe(true);
      const { files, bare } = closure(path);
      expect(files.length).toBeGreaterThanOrEqual(1);
      const node = [...bare].filter((s) => s.startsWith('node:') || BUILTINS.has(s) || BUILTINS.has(s.split('/')[0]!));
      expect(node).toEqual([]);
      expect([...bare].sort()).toEqual(['crc/calculators/crc32', 'eventsource-parser']);
    });
  }
});
