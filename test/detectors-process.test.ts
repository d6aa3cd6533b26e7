import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ROOT } from './helpers/child.js';

const run = promisify(execFile);
const CHILD = 'test/fixtures/detector-child.mjs';

async function scenario(name: string, nodeArgs: string[] = []): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, [...nodeArgs, CHILD, name], { cwd: ROOT, timeout: 30_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

describe('detectors in a fresh process', () => {
  it('trackAsync without async_hooks.createHook degrades: says so once, never throws, still finds dangling streams', async () => {
    const out = (await scenario('fallback', ['--require', './test/fixtures/no-create-hook.cjs'])) as {
      warnings: string[];
      findings: Array<{ kind: string; detail: string }>;
    };
    expect(out.warnings.filter((w) => w === 'STREAMSCOPE_TRACK_ASYNC_UNAVAILABLE')).toHaveLength(1);
    const kinds = out.findings.map((f) => f.kind);
    expect(kinds.filter((k) => k === 'dangling_stream')).toHaveLength(2);
    expect(kinds).not.toContain('dangling_async');
    expect(out.findings[0]!.detail).toMatch(/handler has not settled/);
  });

  it('with createHook, the same scenario also knows the async resources', async () => {
    const out = (await scenario('fallback')) as { warnings: string[]; findings: Array<{ kind: string }> };
    expect(out.warnings).not.toContain('STREAMSCOPE_TRACK_ASYNC_UNAVAILABLE');
    expect(out.findings.map((f) => f.kind)).toContain('dangling_async');
  });

  it('closed streams are collectable: completed, aborted, and leaked-then-closed', async () => {
    const out = (await scenario('gc', ['--expose-gc'])) as {
      alive: Record<string, number>;
      total: Record<string, number>;
      open: number;
      findings: string[];
    };
    expect(out.total).toEqual({ completed: 5, aborted: 5, leaked: 5 });
    // the leaked ones really leaked before they were let go
    expect(out.findings.filter((k) => k === 'zombie_producer')).toHaveLength(5);
    expect(out.open).toBe(0);
    expect(out.alive).toEqual({ completed: 0, aborted: 0, leaked: 0 });
  });

  it('nothing per stream keeps the process alive: a hung producer does not stop the process from exiting', async () => {
    const out = (await scenario('exit')) as { open: number };
    expect(out.open).toBe(1); // it exited (execFile resolved) while a stream was still held
  });
});
