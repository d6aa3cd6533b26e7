/**
 * `diag capture` through the V8 inspector (no agent): SIGUSR1, loopback only, closed again afterwards
 * (the port is refused), an inspector that was already open stays open, and every refusal is one line,
 * exit 2, with the target still alive.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, checkedSse, hangUps, killAll, neverReading, runCli, spawnCli, spawnTracked, startServer, tempAgentDir, until } from './fixtures/servers/harness.js';
import { expectLeakReport } from './helpers/leak-report.js';

const agentDir = tempAgentDir();
const env = { STREAMSCOPE_AGENT_DIR: agentDir };
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-capture-insp-'));
// SIGUSR1 opens the inspector on --inspect-port: 0 picks a free one, so parallel tests never collide on 9229
const RANDOM_PORT = ['--inspect-port=0'];

afterAll(async () => {
  await killAll();
  fs.rmSync(out, { recursive: true, force: true });
  fs.rmSync(path.dirname(agentDir), { recursive: true, force: true });
});

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

function inspectorPort(stderr: string): number {
  const m = stderr.match(/inspector on 127\.0\.0\.1:(\d+)/);
  if (!m) throw new Error(`no inspector port in: ${stderr}`);
  return Number(m[1]);
}

/** Spawns a long-running process that is not our server; killed in afterAll. */
function spawnIdle(cmd: string, args: string[], opts: { uid?: number } = {}): Promise<number> {
  const p = spawnTracked(cmd, args, opts);
  return new Promise((resolve) => setTimeout(() => resolve(p.pid as number), 300));
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  return lines[0] as string;
}

describe('diag capture via the inspector', () => {
  it('captures a streamscope server without its agent, drops no event, and closes the inspector again', async () => {
    const server = await startServer({ agentDir, nodeArgs: RANDOM_PORT, env: { STREAMSCOPE_AGENT: 'off' } });
    const clients = await Promise.all([checkedSse(server.port), checkedSse(server.port)]);
    await until(() => clients.every((c) => c.count() > 5), 'events before the capture');
    const dir = path.join(out, 'with-streamscope');
    const r = await runCli(['capture', String(server.pid), '--out', dir, '--heap', '--trace', '1', '--cpu', '1'], env);
    expect(r.stderr).toContain('opened with SIGUSR1; closed when done');
    expect(r.code).toBe(0);
    const port = inspectorPort(r.stderr);
    expect(await refused(port)).toBe(true);
    const after = clients.map((c) => c.count());
    await until(() => clients.every((c, i) => c.count() > (after[i] as number) + 5), 'events after the capture');
    for (const c of clients) {
      expect(c.gaps).toEqual([]);
      expect(c.closed()).toBe(false);
      c.close();
    }
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ transport: 'inspector', pid: server.pid, complete: true, errors: [] });
    expect(manifest.files).toEqual(['streams.json', 'process.json', 'trace.json', 'cpu.cpuprofile', 'cpu.pb.gz', 'heap.heapsnapshot']);
    const streams = JSON.parse(fs.readFileSync(path.join(dir, 'streams.json'), 'utf8'));
    expect(streams.streams.filter((s: { route: string }) => s.route === '/events')).toHaveLength(2);
    const trace = JSON.parse(fs.readFileSync(path.join(dir, 'trace.json'), 'utf8'));
    expect(trace.traceEvents.length).toBeGreaterThan(0);
    const facts = JSON.parse(fs.readFileSync(path.join(dir, 'process.json'), 'utf8'));
    expect(facts.eventLoopDelay.sampleMs).toBe(1000);
    // a second capture works too: the inspector opens and closes again
    const again = await runCli(['capture', String(server.pid), '--out', path.join(out, 'again')], env);
    expect(again.code).toBe(0);
    expect(await refused(inspectorPort(again.stderr))).toBe(true);
    expect(alive(server.pid)).toBe(true);
  });

  it('the end-to-end leak via the inspector is found by diag analyze with the right counts', async () => {
    const leaky = await startServer({ agentDir, nodeArgs: RANDOM_PORT, env: { STREAMSCOPE_AGENT: 'off' } });
    await hangUps(leaky.port, '/leak', 3);
    const stuck = neverReading(leaky.port, '/flood', 2);
    const dir = path.join(out, 'leak');
    // zombie_producer is raised on the first write after the client left (every 50 ms)
    await new Promise((r) => setTimeout(r, 500));
    const r = await runCli(['capture', String(leaky.pid), '--out', dir, '--heap', '--via', 'inspector'], env);
    expect(r.code).toBe(0);
    const a = await runCli(['analyze', '--json', dir], env);
    expect(a.code).toBe(0);
    const report = expectLeakReport(a.stdout);
    const queued = report.findings.find((f) => f.kind === 'queued_write_buffer');
    expect(queued?.path?.at(-1)).toBe('ServerResponse');
    for (const s of stuck) s.destroy();
    expect(alive(leaky.pid)).toBe(true);
  });

  it('captures a process that never loaded streamscope (heap, no streams.json)', async () => {
    const plain = await startServer({ register: false, nodeArgs: RANDOM_PORT });
    const dir = path.join(out, 'plain');
    const r = await runCli(['capture', String(plain.pid), '--out', dir, '--heap'], env);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('streamscope is not loaded in the target');
    expect(fs.readdirSync(dir).sort()).toEqual(['heap.heapsnapshot', 'manifest.json', 'process.json']);
    expect(await refused(inspectorPort(r.stderr))).toBe(true);
    expect(alive(plain.pid)).toBe(true);
  });

  it('Ctrl-C in the middle of a capture closes the inspector again (exit 130) and the target runs on', async () => {
    const server = await startServer({ register: false, nodeArgs: RANDOM_PORT });
    const cli = spawnCli(['capture', String(server.pid), '--out', path.join(out, 'interrupted'), '--trace', '30'], env);
    await until(() => cli.stderr().includes('tracing for 30 s'), 'the trace to start');
    const port = inspectorPort(cli.stderr());
    cli.proc.kill('SIGINT');
    const r = await cli.result;
    expect(r.code).toBe(130);
    expect(r.stderr).toContain('interrupted; closing the connection to the target');
    await until(() => refused(port), 'the inspector port to be refused', 5000);
    expect(alive(server.pid)).toBe(true);
    // and it can be captured again
    const again = await runCli(['capture', String(server.pid), '--out', path.join(out, 'after-interrupt')], env);
    expect(again.code).toBe(0);
  });

  it('uses an inspector that was already open and leaves it open', async () => {
    const open = await startServer({ register: false, nodeArgs: ['--inspect=127.0.0.1:0'] });
    const r = await runCli(['capture', String(open.pid), '--out', path.join(out, 'open')], env);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('already open; left open');
    const port = inspectorPort(r.stderr);
    expect(await refused(port)).toBe(false);
    expect(open.stderr()).toContain(`ws://127.0.0.1:${port}/`);
    expect(alive(open.pid)).toBe(true);
  });
});

describe('diag capture refusals: one line, exit 2, and the target survives', () => {
  it('no such pid', async () => {
    const gone = spawn('true');
    await new Promise((r) => gone.once('exit', r));
    const r = await runCli(['capture', String(gone.pid), '--out', path.join(out, 'x1')], env);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`diag: no process with pid ${gone.pid}`);
    expect(fs.existsSync(path.join(out, 'x1'))).toBe(false);
  });

  // starting a process as another user needs root (CI and this machine run as root)
  it.skipIf(process.getuid?.() !== 0)('a process of another user', async () => {
    // the other user must be able to run the binary: the system's node when this one sits in root's home
    const node = process.execPath.startsWith('/root/') && fs.existsSync('/usr/bin/node') ? '/usr/bin/node' : process.execPath;
    const pid = await spawnIdle(node, ['-e', 'setInterval(() => {}, 1000)'], { uid: 65534 });
    const r = await runCli(['capture', String(pid), '--out', path.join(out, 'x2')], env);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(new RegExp(`^diag: pid ${pid} belongs to uid 65534, not you .*run diag as that user$`));
    expect(alive(pid)).toBe(true);
  });

  it('a process that is not Node.js (never signalled: SIGUSR1 would kill it)', async () => {
    const pid = await spawnIdle('sleep', ['60']);
    const r = await runCli(['capture', String(pid), '--out', path.join(out, 'x3')], env);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`diag: pid ${pid} is not a Node.js process (sleep)`);
    expect(alive(pid)).toBe(true);
  });

  const permissionFlag = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
  it(`a Node.js process under the permission model (${permissionFlag})`, async () => {
    const server = await startServer({ register: false, nodeArgs: [permissionFlag, '--allow-fs-read=*', ...RANDOM_PORT] });
    const r = await runCli(['capture', String(server.pid), '--out', path.join(out, 'x4')], env);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`diag: pid ${server.pid} refuses the inspector: it runs with ${permissionFlag} (the permission model)`);
    expect(alive(server.pid)).toBe(true);
  });

  const hasDisable = process.allowedNodeEnvironmentFlags.has('--disable-sigusr1');
  it.skipIf(!hasDisable)('a Node.js process started with --disable-sigusr1 (Node >= 22.14)', async () => {
    const server = await startServer({ register: false, nodeArgs: ['--disable-sigusr1'] });
    const r = await runCli(['capture', String(server.pid), '--out', path.join(out, 'x5')], env);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`diag: pid ${server.pid} refuses the inspector: it runs with --disable-sigusr1`);
    expect(alive(server.pid)).toBe(true);
  });

  it('a Node.js process without a SIGUSR1 handler (never signalled: it would die of it)', async () => {
    // adding and removing a listener resets SIGUSR1 to its default action (terminate), as --disable-sigusr1 does
    const pid = await spawnIdle(process.execPath, ['-e', 'const f = () => {}; process.on("SIGUSR1", f); process.off("SIGUSR1", f); setInterval(() => {}, 1000)']);
    const r = await runCli(['capture', String(pid), '--out', path.join(out, 'x8')], env);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`diag: pid ${pid} does not handle SIGUSR1 (started with --disable-sigusr1?), so its inspector cannot be opened; use the agent`);
    expect(alive(pid)).toBe(true);
  });

  it('a Node.js process that handles SIGUSR1 itself (the inspector never opens)', async () => {
    const pid = await spawnIdle(process.execPath, ['-e', 'process.on("SIGUSR1", () => {}); setInterval(() => {}, 1000)']);
    const r = await runCli(['capture', String(pid), '--out', path.join(out, 'x6')], env);
    expect(r.code).toBe(2);
    // the risk is stated before SIGUSR1 (docs/security.md), then the one refusal line
    const [warning, ...rest] = r.stderr.trim().split('\n');
    expect(warning).toMatch(new RegExp(`^diag: warning: while pid ${pid}'s inspector is open .*any local user can connect to it and run code`));
    expect(oneLine(rest.join('\n'))).toMatch(new RegExp(`^diag: the inspector of pid ${pid} did not open within 5 s after SIGUSR1 .*use the agent$`));
    expect(alive(pid)).toBe(true);
  });

  it('--via agent when the process runs no agent', async () => {
    const plain = await startServer({ register: false });
    const r = await runCli(['capture', String(plain.pid), '--via', 'agent', '--out', path.join(out, 'x7')], env);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/^diag: pid \d+ runs no streamscope agent .*try --via inspector$/);
    expect(alive(plain.pid)).toBe(true);
  });
});
