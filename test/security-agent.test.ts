/**
 * The agent socket under abuse from a same-user client, on the real socket of a real server (docs/security.md,
 * "Agent socket"): 16 MB of garbage lines, a flood of valid requests, an endless line. Each connection is
 * dropped at its bound and counted in streamscope_internal_errors_total{component="agent"}; the host's heap
 * stays within a loose bound, and the agent answers the next client.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, alive, killAll, runCli, startServer, tempAgentDir, until, type Server } from './fixtures/servers/harness.js';

const agentDir = tempAgentDir();
let server: Server;

beforeAll(async () => {
  server = await startServer({ agentDir });
});
afterAll(async () => {
  await killAll();
  fs.rmSync(path.dirname(agentDir), { recursive: true, force: true });
});

/** One request on a fresh connection; resolves with its answer's result. */
function ask<T>(op: string, params: object = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path.join(agentDir, `${server.pid}.sock`));
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', reject);
    sock.on('connect', () => sock.write(JSON.stringify({ id: 1, op, ...params }) + '\n'));
    sock.on('data', (t: string) => {
      buf += t;
      const line = buf.split('\n').find((l) => l.startsWith('{"id":1,"ok"'));
      if (line) {
        sock.destroy();
        const a = JSON.parse(line) as { ok: boolean; result: T; error?: unknown };
        if (a.ok) resolve(a.result);
        else reject(new Error(JSON.stringify(a.error)));
      }
    });
  });
}

const heapUsed = async (): Promise<number> => (await ask<{ memoryUsage: { heapUsed: number } }>('process', { sampleMs: 0 })).memoryUsage.heapUsed;
const agentFaults = async (): Promise<number> => (await ask<{ internalErrors: Record<string, number> }>('streams')).internalErrors.agent ?? 0;

/**
 * Sends `total` bytes of `line`s on a connection that never reads its answers. Resolves once the agent
 * closed the connection, or all bytes were handed to the kernel and the agent had 5 s more to react.
 */
function flood(line: string, total: number): Promise<{ closedByAgent: boolean; sent: number }> {
  return new Promise((resolve) => {
    const sock = net.connect(path.join(agentDir, `${server.pid}.sock`));
    sock.pause(); // never read: answers back up in the agent
    let sent = 0;
    let closed = false;
    let done = false;
    const finish = (closedByAgent: boolean): void => {
      if (done) return;
      done = true;
      sock.destroy();
      resolve({ closedByAgent, sent });
    };
    sock.on('error', () => finish(true)); // EPIPE / ECONNRESET: the agent hung up
    sock.on('close', () => {
      closed = true;
      finish(true);
    });
    const chunk = Buffer.from(line.repeat(Math.max(1, Math.floor(65536 / line.length))));
    const pump = (): void => {
      while (!closed && sent < total) {
        sent += chunk.length;
        if (!sock.write(chunk)) return void sock.once('drain', pump);
      }
      if (sent >= total) setTimeout(() => finish(closed), 5000);
    };
    sock.on('connect', pump);
  });
}

describe('agent socket bounds', () => {
  it('16 MB of garbage lines: dropped, counted, host heap growth bounded, the agent answers a new client', async () => {
    const faults0 = await agentFaults();
    const before = await heapUsed();
    const r = await flood('garbage\n', 16 * 1024 * 1024);
    expect(r.closedByAgent).toBe(true);
    const after = await heapUsed();
    console.log(`agent flood: host heapUsed ${(before / 2 ** 20).toFixed(1)} MB → ${(after / 2 ** 20).toFixed(1)} MB; ${(r.sent / 2 ** 20).toFixed(1)} MB sent before the drop`);
    expect(after - before).toBeLessThan(64 * 1024 * 1024);
    expect(await agentFaults()).toBeGreaterThan(faults0);
    expect((await ask<{ pid: number }>('hello')).pid).toBe(server.pid);
    expect(alive(server.pid)).toBe(true);
  });

  it('a flood of valid requests: the queue is bounded, the connection dropped, the next client answered', async () => {
    const faults0 = await agentFaults();
    // each waits 10 s in the agent: they can only queue
    const r = await flood('{"id":7,"op":"process","sampleMs":10000}\n', 4 * 1024 * 1024);
    expect(r.closedByAgent).toBe(true);
    expect(await agentFaults()).toBeGreaterThan(faults0);
    expect((await ask<{ pid: number }>('hello')).pid).toBe(server.pid);
  });

  it('a line that never ends: dropped past 64 KB, the next client answered', async () => {
    const r = await flood('x'.repeat(1024), 8 * 1024 * 1024);
    expect(r.closedByAgent).toBe(true);
    expect(r.sent).toBeLessThan(8 * 1024 * 1024);
    expect((await ask<{ pid: number }>('hello')).pid).toBe(server.pid);
  });

  it('healthy: a client that sends a few requests and reads its answers is served, nothing counted', async () => {
    const faults0 = await agentFaults();
    const sock = net.connect(path.join(agentDir, `${server.pid}.sock`));
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (t: string) => (buf += t));
    await new Promise((r) => sock.once('connect', r));
    for (let i = 1; i <= MAX_BURST; i++) sock.write(JSON.stringify({ id: i, op: i % 2 ? 'hello' : 'streams' }) + '\n');
    await until(() => buf.split('\n').filter((l) => l.startsWith('{"id":')).length === MAX_BURST, 'every answer');
    expect(sock.destroyed).toBe(false);
    sock.destroy();
    expect(await agentFaults()).toBe(faults0);
  });
});

describe('heap transfer to a slow reader', () => {
  // the agent waits for its reader at most HEAP_TRANSFER_MAX_WAIT_MS (30 s) in total, on top of V8's own work
  it('a reader that takes a little every 3 s (never a 10 s stall): the transfer is aborted, the host serves again', async () => {
    const slow = await startServer({ agentDir });
    const c = net.connect(path.join(agentDir, `${slow.pid}.sock`));
    c.pause();
    let got = 0;
    let closed = false;
    c.on('error', () => undefined);
    c.on('close', () => (closed = true));
    await new Promise((r) => c.once('connect', r));
    c.write(JSON.stringify({ id: 1, op: 'heap' }) + '\n');
    const sip = setInterval(() => {
      const b = c.read() as Buffer | null; // what the socket buffered (at most its high-water mark), then nothing for 3 s
      if (b) got += b.length;
    }, 3000);
    const t0 = Date.now();
    try {
      // the host's event loop is held while the snapshot is serialized and sent; its next answer comes after
      const hello = await new Promise<{ pid: number }>((resolve, reject) => {
        const h = net.connect(path.join(agentDir, `${slow.pid}.sock`));
        let buf = '';
        h.setEncoding('utf8');
        h.on('error', reject);
        h.on('connect', () => h.write('{"id":2,"op":"hello"}\n'));
        h.on('data', (t: string) => {
          buf += t;
          const line = buf.split('\n').find((l) => l.startsWith('{"id":2'));
          if (line) {
            h.destroy();
            resolve((JSON.parse(line) as { result: { pid: number } }).result);
          }
        });
      });
      const heldMs = Date.now() - t0;
      console.log(`slow heap reader: host answered again after ${(heldMs / 1000).toFixed(1)} s; the reader had taken ${(got / 1024).toFixed(0)} KB`);
      expect(hello.pid).toBe(slow.pid);
      // read what is left: the agent hung up on the slow reader (no complete snapshot, no answer line)
      clearInterval(sip);
      let tail = Buffer.alloc(0);
      c.on('data', (d: Buffer) => (tail = Buffer.concat([tail, d]).subarray(-256)));
      c.resume();
      await until(() => closed, 'the agent to hang up on the slow reader', 10_000);
      expect(tail.toString('latin1')).not.toContain('"ok":true');
      expect(alive(slow.pid)).toBe(true);
    } finally {
      clearInterval(sip);
      c.destroy();
      await slow.stop();
    }
  }, 240_000);
});

describe('stale agent sockets', () => {
  it('the agent adds no signal handler (that would change how the app exits)', () => {
    const dir = tempAgentDir();
    try {
      const code = `
        const signals = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR2'];
        const count = () => signals.map((s) => process.listenerCount(s)).join(',');
        const before = count();
        const { startAgent } = await import(${JSON.stringify(path.join(ROOT, 'dist/esm/index.js'))});
        const a = startAgent();
        await a.ready;
        console.log(JSON.stringify({ before, after: count(), path: a.path }));
        await a.close();`;
      const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], { env: { ...process.env, STREAMSCOPE_AGENT_DIR: dir }, encoding: 'utf8' });
      const r = JSON.parse(out) as { before: string; after: string; path: string | null };
      expect(r.path).toMatch(new RegExp(`^${dir}/\\d+\\.sock$`)); // the agent did start
      expect(r.after).toBe(r.before);
    } finally {
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('a process killed by a signal leaves its socket; the next agent to start removes it, and so does diag ls', async () => {
    const dir = tempAgentDir();
    try {
      const a = await startServer({ agentDir: dir });
      await a.stop(); // SIGKILL: no exit handler runs, and the agent adds no signal handler
      const aSock = path.join(dir, `${a.pid}.sock`);
      expect(fs.existsSync(aSock)).toBe(true);
      // a link and a plain file that look like stale sockets are never touched
      fs.symlinkSync('/dev/null', path.join(dir, '999999.sock'));
      fs.writeFileSync(path.join(dir, '999998.sock'), '');

      const b = await startServer({ agentDir: dir }); // its agent cleans up at start
      expect(fs.existsSync(aSock)).toBe(false);
      expect(fs.existsSync(path.join(dir, `${b.pid}.sock`))).toBe(true);

      await b.stop();
      const bSock = path.join(dir, `${b.pid}.sock`);
      expect(fs.existsSync(bSock)).toBe(true);
      const ls = await runCli(['ls', '--json'], { STREAMSCOPE_AGENT_DIR: dir });
      expect(ls.code).toBe(0);
      expect(JSON.parse(ls.stdout)).toEqual([]);
      expect(fs.existsSync(bSock)).toBe(false);
      expect(fs.readdirSync(dir).sort()).toEqual(['999998.sock', '999999.sock']);
      expect(fs.lstatSync(path.join(dir, '999999.sock')).isSymbolicLink()).toBe(true);
    } finally {
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });
});

/** Requests a well-behaved client may pipeline at once (the agent's queue holds 16). */
const MAX_BURST = 16;
