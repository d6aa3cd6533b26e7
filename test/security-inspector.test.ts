/**
 * `diag capture --via inspector` never speaks to a port whose listening socket is not the target's own
 * (its inode among /proc/<pid>/fd): a squatter on 127.0.0.1:9229 that answers like an inspector and
 * forges the target's pid gets not one byte, and nothing it says is written. The risk that remains (any
 * local user can attach while the real inspector is open) is printed before the capture, and the window
 * is measured. See docs/security.md ("Inspector window", "Inspector port squatting").
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { alive, killAll, runCli, startServer, tempAgentDir, until } from './fixtures/servers/harness.js';

const agentDir = tempAgentDir();
const env = { STREAMSCOPE_AGENT_DIR: agentDir };
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-sec-insp-'));

afterAll(async () => {
  await killAll();
  fs.rmSync(out, { recursive: true, force: true });
  fs.rmSync(path.dirname(agentDir), { recursive: true, force: true });
});

interface Squatter {
  hits(): number;
  close(): Promise<void>;
}

/** Something on 127.0.0.1:<port> that answers exactly like the inspector of `pid`, with forged data. */
async function squat(port: number, pid: number): Promise<Squatter> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify([{ id: 'forged-0000', type: 'node', webSocketDebuggerUrl: `ws://127.0.0.1:${port}/forged-0000` }]));
  });
  server.on('connection', () => hits++);
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => {
    hits++;
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as { id: number };
      const value = JSON.stringify({ pid, nodeVersion: 'v0.0.0-forged', argv: ['forged'], loaded: true, streams: [{ id: 1, route: '/forged' }], findings: [] });
      ws.send(JSON.stringify({ id: m.id, result: { result: { type: 'string', value } } }));
    });
  });
  // 9229 may be held for a moment by another suite's short-lived inspector: wait for it to be free
  await until(
    () =>
      new Promise<boolean>((resolve) => {
        server.once('error', () => resolve(false));
        server.listen(port, '127.0.0.1', () => resolve(true));
      }),
    `127.0.0.1:${port} to be free`,
    60_000,
  );
  return {
    hits: () => hits,
    close: () =>
      new Promise((resolve) => {
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

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

describe('diag capture --via inspector and a squatter on the inspector port', () => {
  it('refuses a squatter on 127.0.0.1:9229 (not one byte sent to it, nothing written), then captures the real target', async () => {
    // the target's inspector would open on the default port, 9229, which the squatter holds
    const target = await startServer({ agentDir, env: { STREAMSCOPE_AGENT: 'off' } });
    const squatter = await squat(9229, target.pid);
    let released = false;
    try {
      const dir = path.join(out, 'squatted');
      const r = await runCli(['capture', String(target.pid), '--out', dir, '--via', 'inspector'], env);
      expect(r.code).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toBe(
        `diag: 127.0.0.1:9229, where pid ${target.pid}'s inspector would listen, is held by another process; refusing to speak to it (it could pose as the target); use the agent`,
      );
      expect(squatter.hits()).toBe(0);
      expect(fs.existsSync(dir)).toBe(false);
      expect(alive(target.pid)).toBe(true);

      // the squatter goes: the real target's inspector opens on 9229, is captured and closed again
      await squatter.close();
      released = true;
      const real = path.join(out, 'real');
      const ok = await runCli(['capture', String(target.pid), '--out', real, '--via', 'inspector'], env);
      expect(ok.code).toBe(0);
      // the remaining risk is said before the inspector opens, and the window is measured after it closes
      const warn = ok.stderr.indexOf(`warning: while pid ${target.pid}'s inspector is open`);
      expect(warn).toBeGreaterThanOrEqual(0);
      expect(warn).toBeLessThan(ok.stderr.indexOf('capturing pid'));
      const window = ok.stderr.match(new RegExp(`the inspector of pid ${target.pid} was open for (\\d+\\.\\d) s`));
      expect(window).not.toBeNull();
      console.log(`inspector window of a streams + process capture: ${window![1]} s`);
      expect(await refused(9229)).toBe(true);
      const manifest = JSON.parse(fs.readFileSync(path.join(real, 'manifest.json'), 'utf8'));
      expect(manifest).toMatchObject({ transport: 'inspector', pid: target.pid, complete: true });
      expect(manifest.nodeVersion).toBe(process.version);
      const streams = fs.readFileSync(path.join(real, 'streams.json'), 'utf8');
      expect(streams).not.toContain('forged');
      expect(alive(target.pid)).toBe(true);
    } finally {
      if (!released) await squatter.close();
    }
  });

  it('refuses a squatter on the port the target names with --inspect-port, before signalling the target', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const target = await startServer({ agentDir, nodeArgs: [`--inspect-port=${port}`], env: { STREAMSCOPE_AGENT: 'off' } });
    const squatter = await squat(port, target.pid);
    try {
      const r = await runCli(['capture', String(target.pid), '--out', path.join(out, 'squatted2')], env);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toEqual([
        `diag: 127.0.0.1:${port}, where pid ${target.pid}'s inspector would listen, is held by another process; refusing to speak to it (it could pose as the target); use the agent`,
      ]);
      expect(squatter.hits()).toBe(0);
      // never signalled: its inspector did not try (and fail) to open
      expect(target.stderr()).not.toContain('Debugger listening');
      expect(target.stderr()).not.toMatch(/Starting inspector .* failed/);
      expect(alive(target.pid)).toBe(true);
    } finally {
      await squatter.close();
    }
  });
});
