import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { get, parseExposition, sum } from './helpers/http.js';
import { freePort, ROOT } from './helpers/child.js';

describe('the demo (npm start)', () => {
  it('prints where it listens and its metrics URL first, then summaries and findings, and stops cleanly on Ctrl-C', async () => {
    const port = await freePort();
    const proc = spawn(process.execPath, ['--import', 'tsx', 'examples/demo.ts'], {
      cwd: ROOT,
      env: { ...process.env, PORT: String(port), DEMO_STALL_MS: '500', DEMO_DANGLING_MS: '800' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const lines: string[] = [];
    const rl = createInterface({ input: proc.stdout });
    const wanted = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demo output incomplete:\n${lines.join('\n')}\n${stderr}`)), 40_000);
      rl.on('line', (line) => {
        lines.push(line);
        const summaries = lines.filter((l) => l.startsWith('active '));
        const kinds = new Set(lines.filter((l) => l.startsWith('! ')).map((l) => l.split(/\s+/)[1]));
        if (summaries.length >= 2 && kinds.has('stalled_write') && kinds.has('zombie_producer') && kinds.has('dangling_stream') && kinds.has('dangling_async')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    try {
      await wanted;
      expect(lines[0]).toBe(`streamscope demo listening on http://127.0.0.1:${port}`);
      expect(lines[1]).toContain(`http://127.0.0.1:${port}/metrics`);
      expect(lines.find((l) => l.startsWith('active '))).toMatch(/^active\s+\d+\s+streams\/s\s+[\d.]+\s+blocked writes\s+\d+\s+buffered\s+[\d.]+ (B|KiB|MiB)\s+findings \d+$/);
      // each finding is printed once: no stream id appears twice for the same kind
      const keys = lines.filter((l) => l.startsWith('! ')).map((l) => `${l.split(/\s+/)[1]} ${/stream #(\d+)/.exec(l)![1]}`);
      expect(new Set(keys).size).toBe(keys.length);
      const samples = parseExposition((await get(`http://127.0.0.1:${port}/metrics`)).body.toString()).samples;
      for (const route of ['/tokens', '/export', '/firehose', '/leaky']) expect(sum(samples, 'stream_started_total', { route }), route).toBeGreaterThan(0);
      expect(sum(samples, 'write_blocked_total', { route: '/firehose' })).toBeGreaterThan(0);
      expect(sum(samples, 'stream_leaks_total', { route: '/leaky' })).toBeGreaterThan(0);
    } finally {
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      proc.kill('SIGINT');
      const code = await exited;
      expect(code).toBe(0);
      expect(stderr).not.toMatch(/Error|Warning/);
    }
  }, 60_000);
});
