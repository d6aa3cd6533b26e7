/**
 * The out-of-memory hook through the built package (dist/esm/register.js, dist/diagnostics/cli.js):
 * STREAMSCOPE_OOM_PROFILE=<dir> makes a process that leaks until its heap limit (--max-old-space-size=64) write a
 * heap profile as it nears the limit, into a private directory (0700, files 0600), and `diag analyze` names the
 * leaking function by file:line. A directory that is a symbolic link is refused and nothing is written through it.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodePprof } from '../diagnostics/profile/pprof.js';
import { REGISTER, ROOT, mode, runCli, tempAgentDir } from './fixtures/servers/harness.js';

const FIXTURE = path.join(ROOT, 'test/fixtures/servers/oom-leak.mjs');
const source = fs.readFileSync(FIXTURE, 'utf8').split('\n');
const lineOf = (fn: string): number => source.findIndex((l) => l.startsWith(`function ${fn}(`)) + 1;
const agentDir = tempAgentDir();
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-oom-'));

/** Runs the leaking fixture to its end; resolves with its exit code, signal and stderr. */
function leak(oomDir: string | undefined): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, STREAMSCOPE_AGENT_DIR: agentDir };
    if (oomDir !== undefined) env.STREAMSCOPE_OOM_PROFILE = oomDir;
    const proc = spawn(process.execPath, ['--max-old-space-size=64', '--import', REGISTER, FIXTURE], { cwd: os.tmpdir(), env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

afterAll(() => {
  fs.rmSync(out, { recursive: true, force: true });
  fs.rmSync(path.dirname(agentDir), { recursive: true, force: true });
});

describe('STREAMSCOPE_OOM_PROFILE', () => {
  it('a process that leaks until it dies leaves a heap profile that names the leaking function by file:line', async () => {
    const dir = path.join(out, 'profiles');
    const r = await leak(dir);
    // it did die of the heap limit (the hook raises the limit once, to write the profile, not to save the process)
    expect(r.code !== 0 || r.signal !== null, r.stderr.slice(-2000)).toBe(true);
    expect(r.stderr).toMatch(/heap out of memory|Allocation failed/);
    expect(mode(dir)).toBe(0o700);
    const subs = fs.readdirSync(dir);
    expect(subs, r.stderr.slice(-2000)).toHaveLength(1);
    expect(subs[0]).toMatch(/^oom-\d+-/);
    const sub = path.join(dir, subs[0] as string);
    expect(r.stderr).toContain(`heap profile written to ${sub}`);
    expect(mode(sub)).toBe(0o700);
    expect(mode(path.join(sub, 'heap.heapprofile'))).toBe(0o600);
    expect(mode(path.join(sub, 'heap.pb.gz'))).toBe(0o600);

    const a = await runCli(['analyze', sub, '--json']);
    expect(a.code, a.stderr).toBe(0);
    const h = JSON.parse(a.stdout).summary.heapProfile as { totalBytes: number; sites: Array<{ site: string; functionName: string; percent: number }> };
    expect(h.sites[0]?.site, JSON.stringify(h.sites.slice(0, 5))).toBe(`leakyFunction ${FIXTURE}:${lineOf('leakyFunction')}`);
    expect(h.sites[0]!.percent).toBeGreaterThan(50);
    // most of the 64 MiB heap: the leak, sampled
    expect(h.totalBytes).toBeGreaterThan(20 * 2 ** 20);

    // the pprof copy decodes and names the same function
    const p = decodePprof(fs.readFileSync(path.join(sub, 'heap.pb.gz')));
    const names = p.function.map((f) => p.stringTable.strings[Number(f.name)]);
    expect(names).toContain('leakyFunction');
  }, 90_000);

  it('refuses a directory that is a symbolic link and writes nothing through it', async () => {
    const real = fs.mkdtempSync(path.join(out, 'real-'));
    const link = path.join(out, 'link');
    fs.symlinkSync(real, link);
    const r = await leak(link);
    expect(r.stderr).toMatch(/streamscope: the OOM heap profile is off: refusing the OOM profile directory: .* is a symbolic link/);
    expect(fs.readdirSync(real)).toEqual([]);
  }, 90_000);
});
