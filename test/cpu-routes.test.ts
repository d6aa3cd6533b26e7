/**
 * CPU per route through the built package (dist/diagnostics/cli.js, dist/esm/register.js): with the continuous
 * CPU profiler (STREAMSCOPE_CPU_PROFILER=on, optional @datadog/pprof), the samples taken while a stream's code
 * runs carry its route. A target whose two routes burn CPU 3:1 (half in the handler, half after an await) is
 * profiled under alternating requests: `diag analyze --json` gives both routes in about that ratio, cpu.pb.gz
 * carries a `route` label on those samples, and a background timer's samples carry none.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { decodePprof } from '../diagnostics/profile/pprof.js';
import { REGISTER, ROOT, killAll, pprofString, runCli, spawnCli, tempAgentDir, until } from './fixtures/servers/harness.js';

const FIXTURE = path.join(ROOT, 'test/fixtures/servers/cpu-routes.mjs');
const agentDir = tempAgentDir();
const env = { STREAMSCOPE_AGENT_DIR: agentDir };
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-cpuroutes-'));
const children: ChildProcess[] = [];

function target(extraEnv: NodeJS.ProcessEnv): Promise<{ pid: number; port: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', REGISTER, FIXTURE], {
      cwd: os.tmpdir(),
      env: { ...process.env, ...env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(proc);
    let err = '';
    proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    proc.once('exit', (c) => reject(new Error(`target exited ${c}: ${err}`)));
    createInterface({ input: proc.stdout! }).once('line', (l) => resolve(JSON.parse(l) as { pid: number; port: number }));
  });
}

function get(port: number, p: string): Promise<void> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve());
      })
      .on('error', reject);
  });
}

/** /heavy and /light in turn, one at a time, until stopped: each pair burns 6 ms for /heavy and 2 ms for /light. */
function load(port: number): { stop(): Promise<number> } {
  let stopped = false;
  let n = 0;
  const done = (async () => {
    while (!stopped) {
      await get(port, '/heavy');
      await get(port, '/light');
      n++;
    }
  })();
  return {
    async stop() {
      stopped = true;
      await done;
      return n;
    },
  };
}

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await killAll();
  fs.rmSync(out, { recursive: true, force: true });
  fs.rmSync(agentDir, { recursive: true, force: true });
});

describe('CPU per route (continuous profiler)', () => {
  it('diag analyze shows both routes in about their 3:1 ratio; cpu.pb.gz labels their samples, not the background timer', async () => {
    const t = await target({ STREAMSCOPE_CPU_PROFILER: 'on' });
    // the agent starts the profiler off the first tick; wait until it answers that it runs
    await until(async () => {
      const r = await runCli(['ls', '--json'], env);
      return r.stdout.includes(`${t.pid}`);
    }, 'the agent to listen');
    const l = load(t.port);
    const dir = path.join(out, 'cap');
    const cli = spawnCli(['capture', String(t.pid), '--cpu', '3', '--out', dir], env);
    const r = await cli.result;
    const pairs = await l.stop();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/continuous profiler runs/);
    expect(pairs).toBeGreaterThan(20);

    const a = await runCli(['analyze', dir, '--json'], env);
    expect(a.code, a.stderr).toBe(0);
    const routes = JSON.parse(a.stdout).summary.cpu.routes as Array<{ route: string; selfMs: number }>;
    const heavy = routes.find((x) => x.route === '/heavy');
    const light = routes.find((x) => x.route === '/light');
    expect(heavy, JSON.stringify(routes)).toBeDefined();
    expect(light, JSON.stringify(routes)).toBeDefined();
    // 3:1 burnt; loosely, on a loaded machine (the request's own parsing and writing count to both)
    const ratio = heavy!.selfMs / light!.selfMs;
    expect(ratio, JSON.stringify(routes)).toBeGreaterThan(1.6);
    expect(ratio, JSON.stringify(routes)).toBeLessThan(5);
    expect(routes.map((x) => x.route).sort()).toEqual(['/heavy', '/light']);

    // the pprof file: the burning functions' samples carry their route; the background timer's carry none
    const p = decodePprof(fs.readFileSync(path.join(dir, 'cpu.pb.gz')));
    const fnName = new Map(p.function.map((f) => [Number(f.id), pprofString(p, f.name)]));
    const locFn = new Map(p.location.map((x) => [Number(x.id), fnName.get(Number(x.line[0]?.functionId)) ?? '']));
    const byLeaf = new Map<string, Map<string, number>>();
    for (const s of p.sample) {
      const leafFns = s.locationId.map((id) => locFn.get(Number(id)));
      const fn = ['heavyWork', 'lightWork', 'backgroundBurn'].find((n) => leafFns.includes(n));
      if (fn === undefined) continue;
      const route = s.label.filter((x) => pprofString(p, x.key) === 'route').map((x) => pprofString(p, x.str))[0] ?? '(none)';
      const m = byLeaf.get(fn) ?? new Map<string, number>();
      m.set(route, (m.get(route) ?? 0) + Number(s.value[0]));
      byLeaf.set(fn, m);
    }
    const seen = Object.fromEntries([...byLeaf].map(([k, v]) => [k, Object.fromEntries(v)]));
    expect([...(byLeaf.get('heavyWork')?.keys() ?? [])], JSON.stringify(seen)).toEqual(['/heavy']);
    expect([...(byLeaf.get('lightWork')?.keys() ?? [])], JSON.stringify(seen)).toEqual(['/light']);
    expect([...(byLeaf.get('backgroundBurn')?.keys() ?? [])], JSON.stringify(seen)).toEqual(['(none)']);
  }, 60_000);
});
