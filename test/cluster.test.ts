import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, spawnNode, type Child } from './helpers/child.js';
import { installApp } from './helpers/tarball.js';
import { get, parseExposition, sum, until, type Sample } from './helpers/http.js';

const run = promisify(execFile);

/**
 * examples/cluster through the packed tarball: a real node:cluster of 2 workers streaming on one port, the
 * primary serving one aggregated /metrics (clusterMetricsHandler), and `diag ls` showing the workers under
 * their primary.
 */
const node22 = Number(process.versions.node.split('.')[0]) >= 22;
/** prom-client's AggregatorRegistry, and its successor's ClusterRegistry (Node 22+). */
const CLIENTS: Array<[string, string, boolean]> = [
  ['prom-client', '15.1.3', true],
  ['@prometheus-io/client', '>=0.16.0 <1.0.0', node22],
];

for (const [client, range, enabled] of CLIENTS) {
  describe.runIf(enabled)(`node:cluster on ${client}: one /metrics for all workers`, () => {
    let app = '';
    let agents = '';
    let child: Child | undefined;

    beforeAll(async () => {
      app = (await installApp({ [client]: range }, 'module')).dir;
      copyFileSync(join(ROOT, 'examples/cluster/server.mjs'), join(app, 'server.mjs'));
      agents = mkdtempSync(join(tmpdir(), 'streamscope-agents-'));
      child = await spawnNode(['server.mjs'], { WORKERS: '2', TICKS: '5', STREAMSCOPE_AGENT_DIR: agents }, app);
    }, 300_000);
    afterAll(async () => {
      await child?.stop();
      if (app !== '') rmSync(app, { recursive: true, force: true });
      if (agents !== '') rmSync(agents, { recursive: true, force: true });
    });

    it('the primary sums stream_started_total (and the rest) over the workers', async () => {
      const { port, metricsPort, workers } = child!.hello as { port: number; metricsPort: number; workers: number[] };
      expect(workers).toHaveLength(2);
      const servedBy = new Map<string, number>();
      let bytes = 0;
      const N = 8;
      for (let i = 0; i < N; i++) {
        const r = await get(`http://127.0.0.1:${port}/ticks`);
        expect(r.status).toBe(200);
        const w = String(r.headers['x-worker']);
        servedBy.set(w, (servedBy.get(w) ?? 0) + 1);
        bytes += r.body.length;
      }
      // both workers streamed (node:cluster hands connections out round-robin on Linux)
      expect([...servedBy.keys()].sort()).toEqual(workers.map(String).sort());
      const samples = (await until(async (): Promise<Sample[] | false> => {
        const s = parseExposition((await get(`http://127.0.0.1:${metricsPort}/metrics`)).body.toString()).samples;
        return sum(s, 'stream_duration_seconds_count', { route: '/ticks' }) === N && s;
      }, 'every stream closed, summed over the workers')) as Sample[];
      expect(sum(samples, 'stream_started_total', { route: '/ticks', method: 'GET' })).toBe(N);
      expect(sum(samples, 'stream_duration_seconds_count', { route: '/ticks', outcome: 'completed' })).toBe(N);
      expect(sum(samples, 'stream_duration_seconds_bucket', { route: '/ticks', le: '+Inf' })).toBe(N);
      expect(sum(samples, 'stream_bytes_written_total', { route: '/ticks' })).toBe(bytes);
      expect(sum(samples, 'stream_writes_total', { route: '/ticks' })).toBe(N * 5);
      expect(sum(samples, 'stream_active_connections', { route: '/ticks' })).toBe(0);
      // one series per label set: aggregated, not listed once per worker
      const started = samples.filter((s) => s.name === 'stream_started_total' && s.labels.route === '/ticks');
      expect(started).toHaveLength(1);
    }, 60_000);

    it.runIf(client === 'prom-client')('diag ls shows the workers under their primary', async () => {
      const primary = child!.proc.pid!;
      const { workers } = child!.hello as { workers: number[] };
      const cli = join(app, 'node_modules/streamscope/dist/diagnostics/cli.js');
      const env = { ...process.env, STREAMSCOPE_AGENT_DIR: agents };
      const json = JSON.parse((await run(process.execPath, [cli, 'ls', '--json'], { env, timeout: 30_000 })).stdout) as Array<{
        pid: number;
        ppid: number | null;
        clusterWorkerId: number | null;
      }>;
      const byPid = new Map(json.map((e) => [e.pid, e]));
      expect(byPid.get(primary)).toMatchObject({ clusterWorkerId: null });
      for (const w of workers) expect(byPid.get(w)).toMatchObject({ ppid: primary, clusterWorkerId: expect.any(Number) });
      expect(new Set(workers.map((w) => byPid.get(w)!.clusterWorkerId)).size).toBe(2);
      const text = (await run(process.execPath, [cli, 'ls'], { env, timeout: 30_000 })).stdout.split('\n');
      const at = text.findIndex((l) => l.startsWith(`${primary} `));
      expect(at).toBeGreaterThan(0);
      const next = text.slice(at + 1, at + 3);
      for (const w of workers) expect(next.some((l) => l.startsWith(`└ ${w} `) && /\[worker \d+\]/.test(l))).toBe(true);
    }, 60_000);
  });
}
