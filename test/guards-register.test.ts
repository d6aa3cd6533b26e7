/**
 * Guards through `--import streamscope/register` (the built package): STREAMSCOPE_GUARD_* turn them on for
 * every node:http response, a cut is listed by `diag top`, and a bad value is one line that leaves the app up.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killAll, neverReading, runCli, startServer, tempAgentDir, until } from './fixtures/servers/harness.js';
import { freePort } from './helpers/child.js';
import { parseExposition, sum } from './helpers/http.js';

const agentDir = tempAgentDir();
afterAll(async () => {
  await killAll();
  fs.rmSync(path.dirname(agentDir), { recursive: true, force: true });
});

describe('guards from STREAMSCOPE_GUARD_* (register)', () => {
  it('maxBufferedBytes cuts a flood into a client that never reads; diag top lists the action; /metrics counts it', async () => {
    const metricsPort = await freePort();
    const server = await startServer({
      agentDir,
      env: { STREAMSCOPE_GUARD_MAX_BUFFERED_BYTES: '20000', STREAMSCOPE_METRICS_PORT: String(metricsPort), STREAMSCOPE_METRICS_HOST: '127.0.0.1' },
    });
    const env = { STREAMSCOPE_AGENT_DIR: agentDir };
    const socks = neverReading(server.port, '/flood', 1);
    try {
      let top = { code: -1 as number | null, stdout: '' };
      await until(async () => {
        top = await runCli(['top', String(server.pid), '--once'], env);
        return top.stdout.includes('guard actions (');
      }, 'diag top to list the guard action', 20_000);
      expect(top.code).toBe(0);
      const lines = top.stdout.split('\n');
      expect(lines[0]).toMatch(/ · 1 guard actions$/);
      expect(lines).toContainEqual(expect.stringMatching(/^ {2}stream \d+ GET \/flood \d+s ago: guard max_buffered_bytes: .* exceeds maxBufferedBytes 19\.5 KiB/));
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const samples = parseExposition(text).samples;
      expect(sum(samples, 'stream_guard_actions_total', { route: '/flood', guard: 'max_buffered_bytes' })).toBe(1);
      expect(sum(samples, 'stream_duration_seconds_count', { route: '/flood', outcome: 'error' })).toBe(1);
    } finally {
      for (const s of socks) s.destroy();
      await server.stop();
    }
  });

  it('a bad value: one line on stderr naming the variable, the app serves on without that guard', async () => {
    const server = await startServer({ agentDir, env: { STREAMSCOPE_GUARD_STALLED_ACTION: 'kill' } });
    try {
      const r = await fetch(`http://127.0.0.1:${server.port}/events?n=1`).catch((e: unknown) => e);
      expect(r).toBeInstanceOf(Response);
      const lines = server.stderr().split('\n').filter((l) => l.includes('STREAMSCOPE_GUARD'));
      expect(lines).toEqual([expect.stringMatching(/^streamscope: STREAMSCOPE_GUARD_STALLED_ACTION="kill" is invalid \(.*"none" or "destroy".*\); that guard is off$/)]);
    } finally {
      await server.stop();
    }
  });
});
