import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ROOT } from './helpers/child.js';

const run = promisify(execFile);
const bin = (name: string): string => `${ROOT}/node_modules/.bin/${name}`;

describe('packaging', () => {
  it('publint finds no error or warning', async () => {
    const { stdout } = await run(bin('publint'), ['--strict'], { cwd: ROOT, timeout: 120_000 });
    expect(stdout).not.toMatch(/Errors:|Warnings:/);
  }, 150_000);

  it('arethetypeswrong: types resolve for ESM and CJS consumers of every entry point', async () => {
    // node10 resolution cannot see subpath exports; engines is >= 20.6, so the node16 profile applies.
    const { stdout } = await run(bin('attw'), ['--pack', '.', '--profile', 'node16', '--format', 'json'], {
      cwd: ROOT,
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    const report = JSON.parse(stdout) as { analysis: { problems: Array<{ kind: string; resolutionKind?: string }>; entrypoints: Record<string, unknown> } };
    expect(report.analysis.problems.filter((p) => p.resolutionKind !== 'node10')).toEqual([]);
    expect(Object.keys(report.analysis.entrypoints).sort()).toEqual(
      ['.', './client', './express', './fastify', './hono', './koa', './package.json', './register'].sort(),
    );
  }, 150_000);
});
