import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { Redis } from 'ioredis';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './sse.js';

export interface RedisServer {
  port: number;
  url: string;
  /** The pid of the running redis-server (changes on restart). */
  readonly pid: number;
  /** SIGSTOP: the server keeps its connections open and answers nothing. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /**
   * Kills the server (SIGKILL, so it saves nothing on the way out) and starts it again on the same port and
   * directory. With `persist`, a `SAVE` is made first (ask the caller's own client) and the new server loads it;
   * without, the dump is removed and the new server starts empty: a restart without persistence.
   */
  restart(opts?: { persist?: boolean; save?: () => Promise<unknown> }): Promise<void>;
  stop(): Promise<void>;
}

const REDIS = process.env.REDIS_SERVER ?? 'redis-server';

function launch(port: number, dir: string, extra: string[] = []): { child: ChildProcess; ready: Promise<boolean> } {
  const child: ChildProcess = spawn(REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const ready = new Promise<boolean>((resolve, reject) => {
    let out = '';
    const onData = (c: Buffer): void => {
      out += c.toString();
      if (/Ready to accept connections/.test(out)) {
        out = '';
        resolve(true);
      } else if (/Address already in use/.test(out)) resolve(false);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('error', reject);
    child.on('exit', () => resolve(false));
  });
  return { child, ready };
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
  });
}

/**
 * Starts a real `redis-server` on a free port in a temporary directory, with persistence off,
 * and resolves once it accepts connections. `stop()` shuts it down and removes the directory.
 * `extraArgs` come last on its command line (they win): e.g. `['--appendonly', 'yes', '--appendfsync', 'always']`
 * for a server whose every acknowledged write survives a SIGKILL, and so a `restart()`.
 */
export async function startRedis(extraArgs: string[] = []): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'streamscope-redis-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    let { child, ready } = launch(port, dir, extraArgs);
    if (!(await ready)) {
      child.kill('SIGKILL');
      if (attempt < 3) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not start (is ${REDIS} installed?)`);
    }
    child.stdout?.resume();
    child.stderr?.resume();
    const server: RedisServer = {
      port,
      url: `redis://127.0.0.1:${port}`,
      get pid() {
        return child.pid as number;
      },
      freeze: () => void child.kill('SIGSTOP'),
      thaw: () => void child.kill('SIGCONT'),
      restart: async (opts = {}) => {
        if (opts.persist) await opts.save?.();
        else rmSync(join(dir, 'dump.rdb'), { force: true });
        child.kill('SIGCONT');
        child.kill('SIGKILL');
        await exited(child);
        // the port is free again once the old process is gone; a few attempts cover a slow release
        for (let i = 0; ; i++) {
          ({ child, ready } = launch(port, dir, extraArgs));
          if (await ready) break;
          child.kill('SIGKILL');
          await exited(child);
          if (i >= 20) throw new Error(`redis-server did not restart on port ${port}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        child.stdout?.resume();
        child.stderr?.resume();
      },
      stop: async () => {
        child.kill('SIGCONT');
        const done = exited(child);
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        t.unref();
        await done;
        clearTimeout(t);
        rmSync(dir, { recursive: true, force: true });
      },
    };
    return server;
  }
}

/**
 * The harness of the Redis fault tests: a redis-server of the file's own (they flush, kill, restart and freeze
 * it; `extraArgs` as for startRedis) and an admin client, handed to `ready` once started. After each test Redis
 * is thawed, the test's cleanups run (last pushed first), and no promise was left rejected unhandled. Returns the
 * cleanups list.
 */
export function redisFaultHarness(extraArgs: string[], ready: (redis: RedisServer, admin: Redis) => void): Array<() => Promise<void> | void> {
  let redis: RedisServer | undefined;
  let admin: Redis | undefined;
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown): void => void unhandled.push(err);
  beforeAll(async () => {
    redis = await startRedis(extraArgs);
    admin = new Redis(redis.url, { maxRetriesPerRequest: null });
    admin.on('error', () => {});
    process.on('unhandledRejection', onUnhandled);
    ready(redis, admin);
  });
  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    admin?.disconnect();
    await redis?.stop();
  });
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    redis?.thaw();
    while (cleanups.length) await cleanups.pop()!();
    expect(unhandled).toEqual([]);
  });
  return cleanups;
}
