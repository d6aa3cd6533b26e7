import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers/child.js';

// The short version of `npm run soak` (test/soak/run.mjs; docs/reliability.md): the same driver, app, faults and
// checks, with fewer streams. It runs the built package (dist/). Captures via the agent only: an inspector capture
// needs 127.0.0.1:9229, which a parallel test's target may hold (`npm run soak` takes both).
const STREAMS = Number(process.env.SOAK_STREAMS ?? 1500);

describe('soak (short)', () => {
  it(`${STREAMS} streams through the demo routes, sse() and both hub stores, with faults injected: every check passes`, async () => {
    if (!existsSync(join(ROOT, 'dist/esm/index.js'))) throw new Error('dist/esm is missing: run `npm run build` first');
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [join(ROOT, 'test/soak/run.mjs'), '--streams', String(STREAMS), '--max-seconds', '240', '--concurrency', '32', '--seed', '42', '--captures', 'agent'],
        { cwd: ROOT, timeout: 330_000, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
    });
    const checks = stdout.split('\n').filter((l) => /^(ok {2}|FAIL) /.test(l));
    // every invariant the soak promises is printed and checked
    for (const name of [
      'active gauge 0',
      'one outcome per started stream',
      'no unhandled rejection',
      'every resuming client got every event once in order, or an explicit reset/416',
      'heap after GC within 5 % of its start',
      'every fault injected without error',
      'handles and open descriptors at the end not above the start',
      'every client connection closed (none hung)',
    ]) {
      expect(checks.some((l) => l.includes(name)), `${name}\n${stdout}`).toBe(true);
    }
    expect(checks.filter((l) => l.startsWith('FAIL')), `${stdout}\n${stderr}`).toEqual([]);
    expect(code, `${stdout}\n${stderr}`).toBe(0);
  }, 360_000);
});
