/**
 * `diag top` through a real terminal (tmux): the table is redrawn in place, sorted by age or by buffered
 * bytes (`s` toggles), `q` quits with exit code 0 and restores the screen; `--once` prints one plain frame.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, checkedSse, killAll, neverReading, runCli, startServer, tempAgentDir, until, type CheckedSse, type Server } from './fixtures/servers/harness.js';

const agentDir = tempAgentDir();
const env = { STREAMSCOPE_AGENT_DIR: agentDir };
const tmuxSocket = `ss-top-${process.pid}`;
let server: Server;
let clients: CheckedSse[] = [];

const tmux = (...args: string[]): string => execFileSync('tmux', ['-L', tmuxSocket, ...args], { encoding: 'utf8' });
const screen = (): string[] => tmux('capture-pane', '-p', '-t', 'top').split('\n');

beforeAll(async () => {
  server = await startServer({ agentDir });
  clients = await Promise.all([checkedSse(server.port, 50), checkedSse(server.port, 50)]);
  await new Promise((r) => setTimeout(r, 1100)); // the SSE streams are a second older than the flood
  neverReading(server.port, '/flood', 1);
  await until(async () => (await runCli(['top', String(server.pid), '--once'], env)).stdout.includes(' blocked'), 'the flood to back up');
});

afterAll(async () => {
  try {
    tmux('kill-server');
  } catch {
    /* not started */
  }
  for (const c of clients) c.close();
  await killAll();
  fs.rmSync(path.dirname(agentDir), { recursive: true, force: true });
});

function rows(lines: string[]): string[] {
  return lines.filter((l) => /^\d+\s+GET \//.test(l));
}

describe('diag top', () => {
  it('--once prints one plain frame (no escape codes) with every open stream', async () => {
    const r = await runCli(['top', String(server.pid), '--once'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('\x1b');
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^diag top · pid ${server.pid} · node v[\\d.]+ · 3 streams · `));
    expect(lines).toContainEqual(expect.stringMatching(/^ID\s+ROUTE\s+AGE\s+BYTES\s+WRITES\s+BLOCKED\s+BUFFERED\s+FLAGS$/));
    expect(rows(lines).map((l) => l.split(/\s+/)[2])).toEqual(['/events', '/events', '/flood']);
    const sorted = await runCli(['top', String(server.pid), '--once', '--sort', 'buffered'], env);
    expect(rows(sorted.stdout.split('\n')).map((l) => l.split(/\s+/)[2])).toEqual(['/flood', '/events', '/events']);
  });

  it('redraws in place in a terminal, toggles the sort with s, and quits with q', async () => {
    const cmd = `env STREAMSCOPE_AGENT_DIR=${agentDir} ${process.execPath} ${CLI} top ${server.pid} --interval 200; echo "EXIT=$?"; sleep 60`;
    tmux('new-session', '-d', '-s', 'top', '-x', '160', '-y', '40', cmd);
    await until(() => rows(screen()).length === 3, 'the first frame');
    let s = screen();
    expect(s[1]).toMatch(/^sorted by age · s: sort by buffered bytes · q: quit/);
    expect(rows(s).map((l) => l.split(/\s+/)[2])).toEqual(['/events', '/events', '/flood']);
    // refreshed in place: the byte counts of the live SSE streams change, the header stays a single line
    const firstBytes = rows(s)[0]!.split(/\s+/).slice(4, 6).join(' ');
    await until(() => rows(screen())[0]?.split(/\s+/).slice(4, 6).join(' ') !== firstBytes, 'a refresh');
    s = screen();
    expect(s.filter((l) => l.startsWith('diag top ·'))).toHaveLength(1);
    expect(s[0]).toMatch(/^diag top · pid \d+/);

    tmux('send-keys', '-t', 'top', 's');
    await until(() => screen()[1]?.startsWith('sorted by buffered bytes') === true, 'the sort to change');
    expect(rows(screen()).map((l) => l.split(/\s+/)[2])).toEqual(['/flood', '/events', '/events']);
    expect(rows(screen())[0]).toMatch(/blocked/);

    tmux('send-keys', '-t', 'top', 's');
    await until(() => screen()[1]?.startsWith('sorted by age') === true, 'the sort to change back');

    tmux('send-keys', '-t', 'top', 'q');
    await until(() => screen().some((l) => l.startsWith('EXIT=')), 'diag top to quit');
    s = screen();
    expect(s).toContain('EXIT=0');
    // the alternate screen is gone: no table is left on the terminal
    expect(s.some((l) => l.startsWith('diag top ·'))).toBe(false);
    for (const c of clients) expect(c.gaps).toEqual([]);
  });

  it('diag capture draws a progress bar for the heap transfer on a terminal, and clears it', async () => {
    const big = await startServer({ agentDir, env: { BALLAST_MB: '40' } });
    const dir = path.join(path.dirname(agentDir), 'tty-capture');
    const cmd = `env STREAMSCOPE_AGENT_DIR=${agentDir} ${process.execPath} ${CLI} capture ${big.pid} --heap --max-pause 60 --out ${dir}; echo "EXIT=$?"; sleep 60`;
    tmux('new-session', '-d', '-s', 'cap', '-x', '160', '-y', '40', cmd);
    const pane = (): string => tmux('capture-pane', '-p', '-t', 'cap');
    let sawBar = false;
    await until(() => {
      const p = pane();
      if (/heap snapshot \[[#-]{30}\]\s+\d+ % [\d.]+ (KiB|MiB)/.test(p)) sawBar = true;
      return p.includes('EXIT=');
    }, 'the capture to finish', 60_000);
    expect(sawBar).toBe(true);
    const p = pane();
    expect(p).toContain('EXIT=0');
    expect(p).toMatch(/diag: heap snapshot: [\d.]+ MiB/);
    expect(p).not.toMatch(/heap snapshot \[/); // cleared once done
    await big.stop();
  });
});
