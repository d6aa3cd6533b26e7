import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { codes } from '../src/errors.js';
import { ROOT } from './helpers/child.js';

describe('docs/errors.md', () => {
  it('has a row for every error code, and no row for a code that does not exist', () => {
    const doc = readFileSync(`${ROOT}/docs/errors.md`, 'utf8');
    const documented = new Set([...doc.matchAll(/^\| `(STREAMSCOPE_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]));
    expect([...documented].sort()).toEqual(Object.keys(codes).sort());
  });
});
