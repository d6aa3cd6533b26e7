/**
 * `diag capture` through the agent socket, against a real streaming server in a child process:
 * the server keeps serving (a client checks every event it receives during the capture), the capture
 * directory and its files have modes 0700/0600, a refused heap step keeps the cheap parts, and the
 * end-to-end leak scenario is found by `diag analyze`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, checkedSse, hangUps, killAll, mode, neverReading, runCli, spawnCli, startServer, tempAgentDir, until, type Server } from './fixtures/servers/harness.js';
import { expectLeakReport } from './helpers/leak-report.js';

const agentDir = tempAgentDir();
const env = { STREAMSCOPE_AGENT_DIR: agentDir };
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-capture-'));
let server: Server;

beforeAll(async () => {
  server = await startServer({ agentDir });
});
afterAll(async () => {
  await killAll();
  fs.rmSync(out, { recursive: true, force: true });
  fs.rmSync(path.dirname(agentDir), { recursive: true, force: true });
});

describe('diag capture via the agent', () => {
  it('takes streams, process facts, trace, CPU profile and heap while every client event still arrives', async () => {
    const clients = await Promise.all([checkedSse(server.port), checkedSse(server.port), checkedSse(server.port)]);
    await until(() => clients.every((c) => c.count() > 5), 'events before the capture');
    const before = clients.map((c) => c.count());
    const dir = path.join(out, 'full');
    const r = await runCli(['capture', String(server.pid), '--out', dir, '--heap', '--trace', '1', '--cpu', '1'], env);
    expect(r.stderr).toContain('via agent socket');
    expect(r.code).toBe(0);
    // progress bars only on a terminal: none in a pipe
    expect(r.stderr).not.toMatch(/[\r\x1b]/);
    expect(r.stdout.trim()).toBe(dir);
    // the clients kept receiving, with no gap, and are still connected after the capture
    const after = clients.map((c) => c.count());
    await until(() => clients.every((c, i) => c.count() > (after[i] as number) + 5), 'events after the capture');
    for (const [i, c] of clients.entries()) {
      expect(c.gaps).toEqual([]);
      expect(c.closed()).toBe(false);
      expect(c.count()).toBeGreaterThan(before[i] as number);
    }
    for (const c of clients) c.close();

    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ version: 1, pid: server.pid, transport: 'agent', nodeVersion: process.version, complete: true, errors: [] });
    expect(manifest.files).toEqual(['streams.json', 'process.json', 'trace.json', 'cpu.cpuprofile', 'cpu.pb.gz', 'heap.heapsnapshot']);
    expect(mode(dir)).toBe(0o700);
    for (const f of fs.readdirSync(dir)) expect([f, mode(path.join(dir, f))]).toEqual([f, 0o600]);

    const streams = JSON.parse(fs.readFileSync(path.join(dir, 'streams.json'), 'utf8'));
    expect(streams.streams.filter((s: { route: string }) => s.route === '/events')).toHaveLength(3);
    const facts = JSON.parse(fs.readFileSync(path.join(dir, 'process.json'), 'utf8'));
    expect(facts.pid).toBe(server.pid);
    expect(facts.heapStatistics.used_heap_size).toBeGreaterThan(0);
    expect(facts.eventLoopDelay.sampleMs).toBe(1000);
    expect(facts.activeResources.TCPServerWrap).toBeGreaterThanOrEqual(1);
    const trace = JSON.parse(fs.readFileSync(path.join(dir, 'trace.json'), 'utf8'));
    expect(trace.traceEvents.length).toBeGreaterThan(0);
    expect(trace.traceEvents.some((e: { pid: number }) => e.pid === server.pid)).toBe(true);
    const cpu = JSON.parse(fs.readFileSync(path.join(dir, 'cpu.cpuprofile'), 'utf8'));
    expect(Array.isArray(cpu.nodes) && cpu.nodes.length > 0).toBe(true);
    const heap = JSON.parse(fs.readFileSync(path.join(dir, 'heap.heapsnapshot'), 'utf8'));
    expect(heap.snapshot.node_count).toBeGreaterThan(1000);
    expect(alive(server.pid)).toBe(true);
  });

  it('writes nothing into the target working directory (no node_trace.*.log)', () => {
    // the server runs in os.tmpdir(); trace_events would have written node_trace.1.log there
    const logs = fs.readdirSync(os.tmpdir()).filter((f) => /^node_trace\..*\.log$/.test(f));
    const ours = logs.filter((f) => fs.statSync(path.join(os.tmpdir(), f)).mtimeMs > Date.now() - 120_000);
    expect(ours).toEqual([]);
  });

  it('refuses the heap step when free memory is below twice the used heap, keeping streams and process facts', async () => {
    const dir = path.join(out, 'refused');
    const r = await runCli(['capture', String(server.pid), '--out', dir, '--heap'], { ...env, DIAG_ASSUME_FREE_BYTES: '1000' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/expect it to stop serving for about \d+(-\d+)? s and to need up to/);
    const last = r.stderr.trim().split('\n').at(-1) as string;
    expect(last).toMatch(/^diag: heap snapshot refused: .*less than twice its used heap.*--force/);
    expect(fs.readdirSync(dir).sort()).toEqual(['manifest.json', 'process.json', 'streams.json']);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.errors[0].step).toBe('heap');
    expect(alive(server.pid)).toBe(true);

    const forced = await runCli(['capture', String(server.pid), '--out', path.join(out, 'forced'), '--heap', '--force'], { ...env, DIAG_ASSUME_FREE_BYTES: '1000' });
    expect(forced.code).toBe(0);
    expect(fs.existsSync(path.join(out, 'forced', 'heap.heapsnapshot'))).toBe(true);
  });

  it('refuses an existing --out directory with one line and exit 2', async () => {
    const r = await runCli(['capture', String(server.pid), '--out', out], env);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([`diag: ${out} already exists; choose another --out`]);
  });

  it('the end-to-end leak is found by diag analyze: 3 zombie producers, 3 retained responses, 2 queued write buffers', async () => {
    const leaky = await startServer({ agentDir });
    await hangUps(leaky.port, '/leak', 3);
    const stuck = neverReading(leaky.port, '/flood', 2);
    const dir = path.join(out, 'leak');
    // the detectors raise zombie_producer once writes arrive after the client left
    await until(async () => {
      const r = await runCli(['top', String(leaky.pid), '--once'], env);
      return (r.stdout.match(/zombie_producer/g) ?? []).length === 3 && (r.stdout.match(/ blocked/g) ?? []).length === 2;
    }, 'the leaks to show in diag top');
    const r = await runCli(['capture', String(leaky.pid), '--out', dir, '--heap'], env);
    expect(r.code).toBe(0);
    const a = await runCli(['analyze', '--json', dir], env);
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    expectLeakReport(a.stdout);
    for (const s of stuck) s.destroy();
    expect(alive(leaky.pid)).toBe(true);
  });

  it('survives a diag killed in the middle of a heap transfer, and answers the next capture', async () => {
    const big = await startServer({ agentDir, env: { BALLAST_MB: '40' } });
    const dir = path.join(out, 'killed');
    const cli = spawnCli(['capture', String(big.pid), '--out', dir, '--heap', '--max-pause', '60'], env);
    const file = path.join(dir, 'heap.heapsnapshot');
    await until(() => fs.existsSync(file) && fs.statSync(file).size > 1024 * 1024, 'part of the snapshot');
    cli.proc.kill('SIGKILL');
    await cli.result;
    const next = await runCli(['capture', String(big.pid), '--out', path.join(out, 'after-kill')], env);
    expect(next.code).toBe(0);
    expect(alive(big.pid)).toBe(true);
    await big.stop();
  });
});
