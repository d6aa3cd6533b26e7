/**
 * `diag capture --trace N --cpu M` places each long task (issue 20, item 3), through the BUILT CLI and package, on
 * both transports: the CPU profile starts with the trace and runs the longer of the two windows, so the trace's long
 * tasks have samples and `diag analyze` names the function and file:line that ran in them. (Taken one after the
 * other, the profile began when the trace ended: `long_task ×N … up to … ms` with no function.)
 * The target (test/fixtures/servers/long-task.mjs) runs a named busy function from a timer after random gaps, a
 * fixed amount of work per run, so that the runs hold under CPU contention.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, REGISTER, ROOT, killAll, spawnCli, tempAgentDir, until } from './fixtures/servers/harness.js';

const FIXTURE = path.join(ROOT, 'test/fixtures/servers/long-task.mjs');
const PLANTED_LINE = fs.readFileSync(FIXTURE, 'utf8').split('\n').findIndex((l) => l.includes('function plantedLongTask(')) + 1;
const agentDir = tempAgentDir();
const env = { STREAMSCOPE_AGENT_DIR: agentDir };
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-trace-cpu-'));
const children: ChildProcess[] = [];

interface LongTask {
  kind: string;
  severity: string;
  detail: string;
  maxMs: number;
  where?: Array<{ functionName: string; url: string; line: number; column: number; selfMs: number }>;
}

function target(agent: boolean): Promise<{ pid: number; port: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...(agent ? ['--import', REGISTER] : []), FIXTURE], { cwd: work, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(proc);
    let err = '';
    proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    proc.once('exit', (c) => reject(new Error(`target exited ${c}: ${err}`)));
    createInterface({ input: proc.stdout! }).once('line', (l) => resolve(JSON.parse(l) as { pid: number; port: number }));
  });
}

function get(port: number, p: string): Promise<void> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent: false }, (r) => r.resume().on('end', () => resolve())).on('error', reject);
  });
}

beforeAll(() => {
  expect(fs.existsSync(CLI)).toBe(true); // npm run build first
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await killAll();
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(path.dirname(agentDir), { recursive: true, force: true });
});

describe.each([['agent'], ['inspector']] as const)('capture --trace 2 --cpu 3 --via %s, then analyze', (via) => {
  it('each long task names the planted function and its file:line; the profile covers the trace', async () => {
    const t = await target(via === 'agent');
    const dir = path.join(work, via);
    const cli = spawnCli(['capture', String(t.pid), '--out', dir, '--trace', '2', '--cpu', '3', '--via', via], env);
    await until(() => cli.stderr().includes('tracing for'), 'the trace to start', 60_000);
    // the planted long tasks begin once the trace (and the profile started with it) runs
    await new Promise((r) => setTimeout(r, 300));
    await get(t.port, '/plant');
    const r = await cli.result;
    expect(r.stderr).not.toMatch(/capture incomplete/);
    expect(r.code).toBe(0);
    for (const f of ['trace.json', 'cpu.cpuprofile', 'cpu.pb.gz']) expect(fs.existsSync(path.join(dir, f))).toBe(true);

    const out = execFileSync(process.execPath, [CLI, 'analyze', dir, '--json'], { encoding: 'utf8', maxBuffer: 1 << 26, timeout: 120_000 });
    const long = (JSON.parse(out) as { findings: LongTask[] }).findings.filter((f) => f.kind === 'long_task');
    // the capture's own inspector command, or a task that waited for a CPU, is `info`: the app's are the others
    const app = long.filter((f) => f.severity !== 'info');
    expect(app.length).toBeGreaterThanOrEqual(1);
    for (const f of app) {
      expect(f.where?.[0], f.detail).toMatchObject({ functionName: 'plantedLongTask', line: PLANTED_LINE });
      expect(f.where![0]!.url).toMatch(/long-task\.mjs$/);
      expect(f.detail).toContain(`plantedLongTask ${f.where![0]!.url}:${PLANTED_LINE}:`);
    }
    // the profile ran the longer window (3 s), from the trace's start: it covers every trace event
    const profile = JSON.parse(fs.readFileSync(path.join(dir, 'cpu.cpuprofile'), 'utf8')) as { startTime: number; endTime: number };
    const events = (JSON.parse(fs.readFileSync(path.join(dir, 'trace.json'), 'utf8')) as { traceEvents: Array<{ ts?: number; ph?: string }> }).traceEvents;
    const ts = events.filter((e) => typeof e.ts === 'number' && e.ts > 0 && e.ph !== 'M').map((e) => e.ts!);
    expect(profile.endTime - profile.startTime).toBeGreaterThanOrEqual(2_900_000);
    expect(profile.endTime).toBeGreaterThanOrEqual(Math.max(...ts));
    // and the profile's expected pause was printed before the trace, as for --cpu alone
    expect(r.stderr).toMatch(/cpu profile: .*expect a pause[^\n]*\n(diag: [^\n]*\n)?diag: profiling the CPU for 3 s from the trace's start[^\n]*\ndiag: tracing for 2 s/);
  }, 120_000);
});

describe('capture --trace 3 --cpu 1: the trace is the longer', () => {
  it("the profile runs the trace's window, from its start: it covers every trace event", async () => {
    const t = await target(true);
    const dir = path.join(work, 'longer-trace');
    const cli = spawnCli(['capture', String(t.pid), '--out', dir, '--trace', '3', '--cpu', '1'], env);
    await until(() => cli.stderr().includes('tracing for'), 'the trace to start', 60_000);
    await get(t.port, '/plant');
    const r = await cli.result;
    expect(r.code, r.stderr).toBe(0);
    const profile = JSON.parse(fs.readFileSync(path.join(dir, 'cpu.cpuprofile'), 'utf8')) as { startTime: number; endTime: number };
    const events = (JSON.parse(fs.readFileSync(path.join(dir, 'trace.json'), 'utf8')) as { traceEvents: Array<{ ts?: number; ph?: string }> }).traceEvents;
    const ts = events.filter((e) => typeof e.ts === 'number' && e.ts > 0 && e.ph !== 'M').map((e) => e.ts!);
    expect(ts.length).toBeGreaterThan(0);
    // the trace's length, from the trace's start: two recordings of 3 s started side by side, each on its own
    // timer, end within a few ms of each other (seen: the profile 1.3 ms before the trace's last event, which its
    // stop writes), where taken one after the other the profile lasted 1 s and began when the trace ended
    expect(profile.endTime - profile.startTime).toBeGreaterThanOrEqual(2_900_000);
    expect(profile.endTime).toBeGreaterThanOrEqual(Math.max(...ts) - 100_000);
    // started with the trace, not after it (its request goes over a second agent connection: a loaded machine may
    // take a while to open it; one after the other, the profile began 3 s after the trace)
    expect(profile.startTime).toBeLessThanOrEqual(Math.min(...ts) + 1_000_000);
    expect(r.stderr).toMatch(/profiling the CPU for 3 s from the trace's start \(the trace's window, longer than --cpu 1\)/);
  }, 120_000);
});
