import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { spawnNode, ROOT, type Child } from './helpers/child.js';
import { neverReadingClient, parseExposition, sleep, sum, until } from './helpers/http.js';
import { devVersion, installApp, type App } from './helpers/tarball.js';

/**
 * The 39-hour pattern (a dashboard broadcasting every 2 s into one background tab until the heap limit),
 * compressed into seconds: a producer broadcasting ~12 MB/s and ignoring write()'s return value, one client
 * that never reads. Through the packed tarball installed next to real Express, and on plain node:http with
 * `--require streamscope/register` and STREAMSCOPE_GUARD_MAX_BUFFERED_BYTES.
 */

const CAP = 1024 * 1024;
const MIB = 1024 * 1024;
/** Bytes broadcast after the client connected before the run is judged. */
const BROADCAST = 64 * MIB;

let app: App;
beforeAll(async () => {
  app = await installApp({ express: devVersion('express'), 'prom-client': devVersion('prom-client') });
  app.file('broadcast.cjs', fs.readFileSync(path.join(ROOT, 'test/fixtures/guards/broadcast.cjs'), 'utf8'));
}, 300_000);
afterAll(() => app?.remove());

interface Stats {
  broadcastBytes: number;
  maxQueued: number;
  clients: number;
  mem: number;
}

async function stats(port: number): Promise<Stats> {
  const r = await fetch(`http://127.0.0.1:${port}/stats`);
  return (await r.json()) as Stats;
}

async function scenario(mode: 'express' | 'http', guard: boolean): Promise<{ baseline: number; peak: number; last: Stats; guardActions: number; errors: number }> {
  const env: NodeJS.ProcessEnv = { APP_MODE: mode, STREAMSCOPE_AGENT: '0' };
  const args = ['--expose-gc'];
  if (mode === 'http') {
    args.push('--require', 'streamscope/register');
    if (guard) env.STREAMSCOPE_GUARD_MAX_BUFFERED_BYTES = String(CAP);
  } else if (guard) {
    env.APP_CAP = String(CAP);
  }
  args.push(path.join(app.dir, 'broadcast.cjs'));
  const child: Child = await spawnNode(args, env, app.dir);
  try {
    const port = child.hello.port as number;
    const baseline = (await stats(port)).mem;
    const start = (await stats(port)).broadcastBytes;
    const sock = await neverReadingClient(port, '/events');
    let peak = 0;
    let last: Stats;
    try {
      for (;;) {
        last = await stats(port);
        peak = Math.max(peak, last.mem - baseline);
        if (last.broadcastBytes - start >= BROADCAST) break;
        await sleep(100);
      }
    } finally {
      sock.destroy();
    }
    await until(async () => (await stats(port)).clients === 0, 'the client to be gone');
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const samples = parseExposition(text).samples;
    return {
      baseline,
      peak,
      last: last!,
      guardActions: sum(samples, 'stream_guard_actions_total', { guard: 'max_buffered_bytes' }),
      errors: sum(samples, 'stream_duration_seconds_count', { outcome: 'error' }),
    };
  } finally {
    await child.stop();
  }
}

describe.each(['express', 'http'] as const)('the 39-hour pattern through the packed tarball: %s', (mode) => {
  it('with maxBufferedBytes the queue and the heap stay bounded by the cap; the stream is cut and counted', async () => {
    const r = await scenario(mode, true);
    console.log(`${mode} guarded: peak heap+external growth ${(r.peak / MIB).toFixed(1)} MiB, max queued ${(r.last.maxQueued / MIB).toFixed(2)} MiB over ${BROADCAST / MIB} MiB broadcast`);
    // the queue never exceeds the cap by more than the one message that crossed it
    expect(r.last.maxQueued).toBeLessThanOrEqual(CAP + 64 * 1024);
    expect(r.peak).toBeLessThan(16 * MIB);
    expect(r.last.clients).toBe(0); // cut: the broadcaster's close handler dropped it
    expect(r.guardActions).toBe(1);
    expect(r.errors).toBe(1);
  }, 120_000);

  it('without it the same producer grows the heap with everything it broadcast', async () => {
    const r = await scenario(mode, false);
    console.log(`${mode} unguarded: peak heap+external growth ${(r.peak / MIB).toFixed(1)} MiB, max queued ${(r.last.maxQueued / MIB).toFixed(2)} MiB over ${BROADCAST / MIB} MiB broadcast`);
    expect(r.last.maxQueued).toBeGreaterThan(32 * MIB);
    expect(r.peak).toBeGreaterThan(32 * MIB);
    expect(r.guardActions).toBe(0);
  }, 120_000);
});
