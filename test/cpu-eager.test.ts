/**
 * `diag capture --cpu` through the agent's eager-logging CPU profiler (optional @sentry-internal/node-cpu-profiler),
 * through the built package (dist/diagnostics/cli.js, dist/esm/register.js). The agent creates the profiler
 * when it starts, while the heap is small; a capture on a target that then holds about 200 MB of heap needs no
 * walk of it: the profiler's start and stop take milliseconds where the inspector's `Profiler.start` takes 0.2-1 s
 * (asserted loosely here, with the target's longest stall from bench/pause-probe.mjs inside it; the figures are in
 * docs/benchmarks.md, "Light captures"). The profile
 * names the planted busy function with its file and line, in cpu.cpuprofile, cpu.pb.gz and `diag analyze`.
 * Without the package (hidden from require) or with STREAMSCOPE_CPU_EAGER=off, the inspector answers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { decodePprof } from '../diagnostics/profile/pprof.js';
import { REGISTER, ROOT, killAll, pprofString, runCli, tempAgentDir, until } from './fixtures/servers/harness.js';
import { resolveLines, toCpuProfile, type EagerRawProfile } from '../src/consumers/agent/eager-cpu.js';

const FIXTURE = path.join(ROOT, 'test/fixtures/servers/cpu-eager.mjs');
const PROBE = path.join(ROOT, 'bench/pause-probe.mjs');
const HIDE = path.join(ROOT, 'test/fixtures/hide-eager-profiler.cjs');
const agentDir = tempAgentDir();
const env = { STREAMSCOPE_AGENT_DIR: agentDir };
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-cpueager-'));
const children: ChildProcess[] = [];
const PLANTED_LINE = fs.readFileSync(FIXTURE, 'utf8').split('\n').findIndex((l) => l.includes('function plantedHotLoop(')) + 1;

interface Target {
  pid: number;
  stderr(): string;
  /** The longest event-loop stall since the last call (the probe's SIGUSR2 answer). */
  stall(): Promise<number>;
}

function target(extraEnv: NodeJS.ProcessEnv, nodeArgs: string[] = []): Promise<Target> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...nodeArgs, '--import', PROBE, '--import', REGISTER, FIXTURE], {
      cwd: os.tmpdir(),
      env: { ...process.env, ...env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(proc);
    let err = '';
    const pauses: Array<(ms: number) => void> = [];
    createInterface({ input: proc.stderr! }).on('line', (l) => {
      const m = /^PAUSE (.*)$/.exec(l);
      if (m) pauses.shift()?.((JSON.parse(m[1] as string) as { maxStallMs: number }).maxStallMs);
      else err += `${l}\n`;
    });
    proc.once('exit', (c) => reject(new Error(`target exited ${c}: ${err}`)));
    createInterface({ input: proc.stdout! }).once('line', (l) => {
      const { pid } = JSON.parse(l) as { pid: number };
      resolve({
        pid,
        stderr: () => err,
        stall: () =>
          new Promise((r) => {
            pauses.push(r);
            proc.kill('SIGUSR2');
          }),
      });
    });
  });
}

async function agentUp(pid: number): Promise<void> {
  await until(async () => (await runCli(['ls', '--json'], env)).stdout.includes(`${pid}`), 'the agent to listen');
}

interface Frame {
  functionName: string;
  url: string;
  lineNumber: number;
}

/**
 * The inspector's profile of the fixture: its code is there (the planted function itself may not be: a loop that V8
 * compiled on stack before the profile began loses its frame in a lazily logging profiler, docs/diag.md).
 */
function expectInspectorProfile(dir: string): void {
  const cpu = JSON.parse(fs.readFileSync(path.join(dir, 'cpu.cpuprofile'), 'utf8')) as { nodes: Array<{ callFrame: Frame }>; samples: number[] };
  expect(cpu.samples.length).toBeGreaterThan(100);
  expect(cpu.nodes.some((n) => n.callFrame.url === `file://${FIXTURE}`)).toBe(true);
}

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await killAll();
  fs.rmSync(out, { recursive: true, force: true });
  fs.rmSync(agentDir, { recursive: true, force: true });
});

describe('--cpu through the eager-logging profiler', () => {
  it('names the planted function with file:line on a ~200 MB heap, and the target stalls far less than a heap walk', async () => {
    const t = await target({ BALLAST_MB: '160' });
    await agentUp(t.pid);
    await t.stall(); // forget the ballast's build
    const dir = path.join(out, 'eager');
    const r = await runCli(['capture', String(t.pid), '--cpu', '2', '--out', dir], env);
    const stall = await t.stall();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/cpu profile: the eager-logging profiler \(@sentry-internal\/node-cpu-profiler/);
    // the profiler's own start and stop, as the agent timed them: the inspector's `Profiler.start` walks this heap for
    // 0.2 s (quiet machine) to 1 s (loaded), a start in lazy logging mode likewise; loosely, as the machine may be loaded
    const calls = Number(/cpu profile: eager, ([\d.]+) ms in the target's calls/.exec(r.stderr)?.[1]);
    expect(calls, r.stderr).toBeLessThan(100);
    // the target's longest stall over the whole capture (streams, process facts, the profile's transfer, and whatever
    // a loaded machine adds: 150 ms with no capture at all at a load of 8 on 2 CPUs): very loosely
    expect(stall, r.stderr).toBeLessThan(500);

    const cpu = JSON.parse(fs.readFileSync(path.join(dir, 'cpu.cpuprofile'), 'utf8')) as { nodes: Array<{ id: number; callFrame: Frame; hitCount: number; children: number[] }>; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number };
    const planted = cpu.nodes.filter((n) => n.callFrame.functionName === 'plantedHotLoop');
    expect(planted.length).toBeGreaterThan(0);
    expect(planted.map((n) => [n.callFrame.url, n.callFrame.lineNumber + 1])).toContainEqual([`file://${FIXTURE}`, PLANTED_LINE]);
    expect(cpu.samples.length).toBe(cpu.timeDeltas.length);
    // 99 Hz for 2 s is 198 samples; a main thread kept off the CPU by a loaded machine loses some (a pending SIGPROF
    // absorbs the next), so loosely below, and the samples still span the window
    expect(cpu.samples.length).toBeGreaterThan(40);
    expect(cpu.samples.length).toBeLessThan(260);
    const spanUs = cpu.timeDeltas.reduce((a, b) => a + b, 0);
    expect(spanUs).toBeGreaterThan(1_500_000);
    expect(spanUs).toBeLessThanOrEqual(cpu.endTime - cpu.startTime);
    const ids = new Set(cpu.nodes.map((n) => n.id));
    for (const n of cpu.nodes) for (const c of n.children) expect(ids.has(c)).toBe(true);

    const a = await runCli(['analyze', dir, '--json'], env);
    expect(a.code, a.stderr).toBe(0);
    const top = JSON.parse(a.stdout).summary.cpu.top as Array<{ functionName: string; url: string; line: number; selfPercent: number }>;
    const hot = top.find((f) => f.functionName === 'plantedHotLoop');
    expect(hot, JSON.stringify(top)).toMatchObject({ url: `file://${FIXTURE}`, line: PLANTED_LINE });
    // 4 ms burnt after random gaps of 2-12 ms, the clock read rarely (the fixture): about a third of the samples (26-36 %
    // quiet, 30-42 % beside 3 busy loops); loosely, for a loaded machine
    expect(hot!.selfPercent).toBeGreaterThan(10);

    const p = decodePprof(fs.readFileSync(path.join(dir, 'cpu.pb.gz')));
    const fn = p.function.find((f) => pprofString(p, f.name) === 'plantedHotLoop');
    expect(fn && pprofString(p, fn.filename)).toBe(`file://${FIXTURE}`);
    const loc = p.location.find((l) => Number(l.line[0]?.functionId) === Number(fn!.id));
    expect(Number(loc?.line[0]?.line)).toBe(PLANTED_LINE);
  }, 90_000);

  it('falls back to the inspector with STREAMSCOPE_CPU_EAGER=off', async () => {
    const t = await target({ STREAMSCOPE_CPU_EAGER: 'off' });
    await agentUp(t.pid);
    const dir = path.join(out, 'off');
    const r = await runCli(['capture', String(t.pid), '--cpu', '1', '--out', dir], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/cpu profile: the inspector's Profiler.start in the agent: V8 logs the existing code/);
    expect(r.stderr).toMatch(/cpu profile: inspector\n/);
    expectInspectorProfile(dir);
  }, 60_000);

  it('falls back to the inspector when the package is not installed, and says so once when it was asked for', async () => {
    const t = await target({ STREAMSCOPE_CPU_EAGER: 'on' }, ['--require', HIDE]);
    await agentUp(t.pid);
    expect(t.stderr()).toMatch(/streamscope: the eager CPU profiler is off \(the optional dependency @sentry-internal\/node-cpu-profiler is not installed\); CPU captures will use the inspector/);
    const dir = path.join(out, 'missing');
    const r = await runCli(['capture', String(t.pid), '--cpu', '1', '--out', dir], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/cpu profile: inspector\n/);
    expectInspectorProfile(dir);
  }, 60_000);
});

describe('when the agent starts late', () => {
  it('does not create the profiler on a heap above 32 MB (its walk would stall the app), and says so when asked for it', async () => {
    const code = `const keep = []; for (let i = 0; i < 600000; i++) keep.push({ i, s: 'x' + i });
      const { startAgent } = await import(${JSON.stringify(path.join(ROOT, 'dist/esm/index.js'))});
      const t = performance.now(); const a = startAgent({ cpuEager: true }); await a.ready;
      process.stdout.write(JSON.stringify({ ms: performance.now() - t, n: keep.length })); await a.close();`;
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, ['--input-type=module', '-e', code], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(p);
      let stdout = '';
      let stderr = '';
      p.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
      p.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
      p.on('close', (c) => resolve({ code: c, stdout, stderr }));
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/streamscope: the eager CPU profiler is off \(\d+ MB of used heap: creating it now would stall the process for about \d+ ms \(start the agent earlier/);
  }, 30_000);
});

describe('the eager profile as a .cpuprofile', () => {
  it("rebuilds V8's tree from the binding's frames, keeps sample times, and hangs a cut stack from the root", () => {
    const raw: EagerRawProfile = {
      frames: [
        { function: 'leaf', abs_path: '/app/a.js', lineno: 9, colno: 18 },
        { function: 'mid', abs_path: '/app/a.js', lineno: 20, colno: 13 },
        { function: '(root)', lineno: 0, colno: 0 },
        { function: 'other', abs_path: 'node:internal/x', lineno: 3, colno: 5 },
        { function: 'cut', abs_path: '/app/b.js', lineno: 4, colno: 2 },
      ],
      // innermost first; stack 2 was cut at the binding's depth limit (no root)
      stacks: [[0, 1, 2], [3, 1, 2], [4]],
      samples: [
        { stack_id: 0, elapsed_since_start_ns: '1000000' },
        { stack_id: 1, elapsed_since_start_ns: '11000000' },
        { stack_id: 0, elapsed_since_start_ns: '21000000' },
        { stack_id: 2, elapsed_since_start_ns: '31000000' },
      ],
    };
    const p = toCpuProfile(raw, 5_000_000, 40_000, [2, 15, 0, 0, 1]);
    const byName = new Map(p.nodes.map((n) => [n.callFrame.functionName, n]));
    const root = p.nodes[0]!;
    expect(root.callFrame.functionName).toBe('(root)');
    expect(root.children.sort()).toEqual([byName.get('mid')!.id, byName.get('cut')!.id].sort());
    expect(byName.get('mid')!.children.sort()).toEqual([byName.get('leaf')!.id, byName.get('other')!.id].sort());
    // 0-based lines from the resolved start lines; 0-based columns; CommonJS paths as file URLs
    expect(byName.get('leaf')!.callFrame).toEqual({ functionName: 'leaf', scriptId: '0', url: 'file:///app/a.js', lineNumber: 1, columnNumber: 17 });
    expect(byName.get('other')!.callFrame).toMatchObject({ url: 'node:internal/x', lineNumber: -1 });
    expect(p.samples).toEqual([byName.get('leaf')!.id, byName.get('other')!.id, byName.get('leaf')!.id, byName.get('cut')!.id]);
    expect(p.timeDeltas).toEqual([1000, 10000, 10000, 10000]);
    expect(byName.get('leaf')!.hitCount).toBe(2);
    expect([p.startTime, p.endTime]).toEqual([5_000_000, 5_040_000]);
  });

  it('finds where each function starts from its column, its name, and the lines its callees were called from', async () => {
    const file = path.join(out, 'lines.js');
    const src = [
      'function hot(ms) {', //                             1: hot, '(' at column 13
      '  return ms;',
      '}',
      'class Server {',
      '  handle(req) {', //                                5: Server.handle, '(' at column 9
      '    return hot(1);', //                             6: calls hot
      '  }',
      '  other(req) {',
      '    const cb = (x) => {', //                        9: anonymous arrow, '(' at column 16
      '      return hot(x);', //                          10: calls hot
      '    };',
      '  }',
      '  again(req) {', //                                13: a second handle-like method at column 9
      '  }',
      '}',
      'const handle = function (x) { return x; };', //    16
    ].join('\n');
    fs.writeFileSync(file, src);
    const at = (name: string, lineno: number, colno: number) => ({ function: name, abs_path: file, lineno, colno });
    const raw: EagerRawProfile = {
      frames: [
        at('hot', 6, 13), //           0, called from handle's line 6
        at('Server.handle', 20, 9), // 1
        at('(root)', 0, 0), //         2
        at('hot', 10, 13), //          3, called from the arrow's line 10
        at('', 30, 16), //             4: the arrow
        at('', 0, 16), //              5: an anonymous function without callees
        { function: '(root)', lineno: 0, colno: 0 },
        { function: 'builtin', abs_path: 'node:internal/x', lineno: 3, colno: 5 },
      ],
      stacks: [[0, 1, 6], [3, 4, 6], [5, 6], [7, 6]],
      samples: [],
    };
    raw.frames[2] = raw.frames[6]!;
    const lines = await resolveLines(raw);
    expect(lines[0]).toBe(1);
    expect(lines[1]).toBe(5);
    expect(lines[3]).toBe(1);
    expect(lines[4]).toBe(9);
    expect(lines[5]).toBe(0);
    expect(lines[7]).toBe(0);
  });
});
