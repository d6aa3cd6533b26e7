/**
 * The in-process agent (startAgent): a private socket (dir 0700, socket 0600, removed on exit), idempotent
 * across the ESM and CJS copies, never keeps the app alive, refuses an unsafe directory without hurting the
 * app, answers the protocol, streams a heap snapshot to a slow reader and survives a reader that hangs up.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../src/consumers/agent/version.js';
import { ROOT, alive, killAll, mode, runCli, startServer, tempAgentDir, until, type Server } from './fixtures/servers/harness.js';

const CHILD = path.join(ROOT, 'test/fixtures/servers/agent-child.mjs');
const agentDir = tempAgentDir();
const env = { STREAMSCOPE_AGENT_DIR: agentDir };
let server: Server;

beforeAll(async () => {
  server = await startServer({ agentDir });
});
afterAll(async () => {
  await killAll();
  fs.rmSync(path.dirname(agentDir), { recursive: true, force: true });
});

function child(arg: string, dir: string): Promise<{ lines: Array<Record<string, unknown>>; code: number | null; stderr: string; kill(): void }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CHILD, arg], { env: { ...process.env, STREAMSCOPE_AGENT_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const done = (code: number | null): void =>
      resolve({ lines: out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)), code, stderr: err, kill: () => p.kill('SIGKILL') });
    p.on('exit', (code) => done(code));
    if (arg === 'idempotent') {
      const t = setInterval(() => {
        if (out.split('\n').length >= 3) {
          clearInterval(t);
          p.kill('SIGTERM');
        }
      }, 50);
    }
  });
}

/** A raw protocol client: send lines, collect everything the agent sends back. */
function rawClient(pid: number): Promise<{ sock: net.Socket; lines(): Array<Record<string, unknown>>; bytes(): Buffer; send(o: object | string): void }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path.join(agentDir, `${pid}.sock`));
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => (buf = Buffer.concat([buf, d])));
    sock.once('error', reject);
    sock.once('connect', () =>
      resolve({
        sock,
        bytes: () => buf,
        lines: () =>
          buf
            .toString('utf8')
            .split('\n')
            .filter((l) => l.startsWith('{'))
            .map((l) => JSON.parse(l)),
        send: (o) => sock.write(typeof o === 'string' ? o : JSON.stringify(o) + '\n'),
      }),
    );
  });
}

describe('startAgent()', () => {
  it('listens on <dir>/<pid>.sock with directory 0700 and socket 0600', () => {
    const sock = path.join(agentDir, `${server.pid}.sock`);
    expect(fs.lstatSync(sock).isSocket()).toBe(true);
    expect(mode(agentDir)).toBe(0o700);
    expect(mode(sock)).toBe(0o600);
    expect(fs.statSync(sock).uid).toBe(process.getuid!());
  });

  it('is idempotent across calls and across the ESM and CJS copies; close() removes the socket', async () => {
    const dir = path.join(path.dirname(agentDir), 'idem');
    const r = await child('idempotent', dir);
    expect(r.lines[0]).toMatchObject({ same: true, error: null });
    expect(r.lines[0]!.path).toMatch(/\/\d+\.sock$/);
    expect(r.lines[1]).toMatchObject({ restarted: true, path: r.lines[0]!.path });
    // the SIGTERM killed it without an exit handler running: the socket is stale now, and diag ls cleans it
    const ls = await runCli(['ls', '--json'], { STREAMSCOPE_AGENT_DIR: dir });
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.stdout)).toEqual([]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('never keeps the app alive, and removes its socket when the process exits', async () => {
    const dir = path.join(path.dirname(agentDir), 'idle');
    const r = await child('idle', dir);
    expect(r.code).toBe(0);
    expect(r.lines[0]!.error).toBe(null);
    expect(fs.existsSync(r.lines[0]!.path as string)).toBe(false);
  });

  it('refuses a directory that others can read, and the app runs on', async () => {
    const dir = path.join(path.dirname(agentDir), 'open');
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.chmodSync(dir, 0o755);
    const r = await child('idle', dir);
    expect(r.code).toBe(0);
    expect(r.lines[0]).toMatchObject({ path: null });
    expect(r.lines[0]!.error).toMatch(/has mode 755, expected 700/);
    // one process warning with the registry's code (docs/errors.md), never a throw
    expect(r.stderr).toMatch(/\[STREAMSCOPE_ERR_AGENT\] Warning: streamscope: agent failed to start: .*has mode 755, expected 700/);
    expect(r.stderr.match(/STREAMSCOPE_ERR_AGENT/g)).toHaveLength(1);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('reports the package version', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(VERSION).toBe(pkg.version);
  });
});

describe('the agent protocol', () => {
  it('answers hello, streams and process; rejects malformed lines, unknown ops and bad durations', async () => {
    const c = await rawClient(server.pid);
    c.send({ id: 1, op: 'hello' });
    c.send('not json\n');
    c.send({ id: 2, op: 'nope' });
    c.send({ id: 3, op: 'trace', seconds: -1 });
    c.send({ id: 4, op: 'streams' });
    c.send({ id: 5, op: 'process', sampleMs: 50 });
    await until(() => c.lines().some((l) => l.id === 5), 'all answers');
    const by = new Map(c.lines().map((l) => [l.id, l]));
    expect(by.get(1)).toMatchObject({ ok: true, result: { pid: server.pid, nodeVersion: process.version, streamscopeVersion: VERSION, protocol: 1 } });
    expect(by.get(null)).toMatchObject({ ok: false, error: { code: 'EPROTO' } });
    expect(by.get(2)).toMatchObject({ ok: false, error: { code: 'EINVAL' } });
    expect(by.get(3)).toMatchObject({ ok: false, error: { code: 'EINVAL' } });
    expect(by.get(4)).toMatchObject({ ok: true, result: { pid: server.pid, streams: [], findings: [] } });
    const facts = (by.get(5) as { result: Record<string, any> }).result;
    expect(facts.eventLoopDelay.sampleMs).toBe(50);
    expect(facts.memoryUsage.heapUsed).toBeGreaterThan(0);
    expect(typeof facts.eventLoopUtilization.sample).toBe('number');
    expect(facts.heapStatistics.used_heap_size).toBeGreaterThan(0);
    c.sock.destroy();
  });

  it('streams a whole heap snapshot to a reader that reads slowly', async () => {
    const c = await rawClient(server.pid);
    c.sock.pause();
    c.send({ id: 1, op: 'heap' });
    // read in small sips: the agent must wait for us instead of piling the snapshot up in the app
    const t = setInterval(() => {
      c.sock.resume();
      setTimeout(() => c.sock.pause(), 2);
    }, 10);
    await until(() => c.bytes().includes(Buffer.from('{"id":1,"ok":true')), 'the heap answer', 40_000);
    clearInterval(t);
    const all = c.bytes();
    const start = all.indexOf(10) + 1; // after the {"id":1,"binary":true} line
    expect(JSON.parse(all.subarray(0, start - 1).toString())).toEqual({ id: 1, binary: true });
    const parts: Buffer[] = [];
    let off = start;
    for (;;) {
      const len = all.readUInt32BE(off);
      off += 4;
      if (len === 0) break;
      parts.push(all.subarray(off, off + len));
      off += len;
    }
    const snapshot = JSON.parse(Buffer.concat(parts).toString('utf8'));
    expect(snapshot.snapshot.node_count).toBeGreaterThan(1000);
    const answer = JSON.parse(all.subarray(off).toString().trim());
    // written straight to the socket, and the agent waited for this slow reader rather than queueing the rest
    expect(answer).toMatchObject({ id: 1, ok: true, result: { bytes: Buffer.concat(parts).length, mode: 'direct' } });
    expect(answer.result.waits).toBeGreaterThan(0);
    c.sock.destroy();
  });

  it('survives a reader that hangs up in the middle of a heap snapshot', async () => {
    const c = await rawClient(server.pid);
    c.send({ id: 1, op: 'heap' });
    await until(() => c.bytes().length > 64 * 1024, 'some snapshot bytes');
    c.sock.destroy();
    // the app answers the next client, and is still alive
    const d = await rawClient(server.pid);
    d.send({ id: 7, op: 'hello' });
    await until(() => d.lines().some((l) => l.id === 7), 'hello after the hang-up');
    d.sock.destroy();
    expect(alive(server.pid)).toBe(true);
  });
});

describe('diag ls', () => {
  it('lists the processes that run the agent, with their open streams, and cleans stale sockets', async () => {
    const other = await startServer({ agentDir });
    const gone = await startServer({ agentDir });
    await gone.stop(); // SIGKILL: no exit handler, the socket stays behind
    expect(fs.existsSync(path.join(agentDir, `${gone.pid}.sock`))).toBe(true);
    const r = await runCli(['ls', '--json'], env);
    expect(r.code).toBe(0);
    const list = JSON.parse(r.stdout) as Array<{ pid: number; openStreams: number; command: string }>;
    expect(list.map((e) => e.pid).sort()).toEqual([server.pid, other.pid].sort());
    expect(list[0]!.command).toContain('stream-server.mjs');
    expect(fs.existsSync(path.join(agentDir, `${gone.pid}.sock`))).toBe(false);
    const text = await runCli(['ls'], env);
    expect(text.stdout.split('\n')[0]).toMatch(/^PID\s+NODE\s+STREAMS\s+UPTIME\s+COMMAND$/);
    expect(text.stdout).toContain(String(other.pid));
  });
});
