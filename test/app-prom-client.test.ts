import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, spawnNode, type Child } from './helpers/child.js';
import { installApp } from './helpers/tarball.js';
import { get, parseExposition, sum, until, type Sample } from './helpers/http.js';

/**
 * What a user installs: the packed tarball beside the app's own prom-client (14 or 15). The app serves
 * `require('prom-client').register` on its own /metrics; streamscope's series must be there, with the counts
 * the client saw, under instrument() and under `streamscope/register`. The app is examples/prom-client-14.
 */
const EXAMPLE = join(ROOT, 'examples/prom-client-14/server.cjs');
const STREAMS = 3;

async function exercise(child: Child, expectedVersion: string): Promise<void> {
  expect(child.hello.promClient).toBe(expectedVersion);
  const base = `http://127.0.0.1:${child.hello.port as number}`;
  let bytes = 0;
  for (let i = 0; i < STREAMS; i++) {
    const r = await get(`${base}/ticks`);
    expect(r.status).toBe(200);
    expect(r.body.toString()).toContain('data: tick 4\n\n');
    bytes += r.body.length;
  }
  // the duration is observed when the server side closes, which may trail the client's last byte a little
  const samples = (await until(async (): Promise<Sample[] | false> => {
    const s = parseExposition((await get(`${base}/metrics`)).body.toString()).samples;
    return sum(s, 'stream_duration_seconds_count', { route: '/ticks' }) === STREAMS && s;
  }, 'every stream closed in the app registry')) as Sample[];
  expect(sum(samples, 'stream_started_total', { route: '/ticks', method: 'GET' })).toBe(STREAMS);
  expect(sum(samples, 'stream_duration_seconds_count', { route: '/ticks', outcome: 'completed' })).toBe(STREAMS);
  expect(sum(samples, 'stream_bytes_written_total', { route: '/ticks' })).toBe(bytes);
  expect(sum(samples, 'stream_writes_total', { route: '/ticks' })).toBe(STREAMS * 5);
  expect(sum(samples, 'stream_active_connections', { route: '/ticks' })).toBe(0);
}

for (const version of ['14.2.0', '15.1.3']) {
  describe(`an app on prom-client ${version}, streamscope from the packed tarball`, () => {
    let app = '';
    const children: Child[] = [];
    const start = async (args: string[]): Promise<Child> => {
      const c = await spawnNode(args, { TICKS: '5', STREAMSCOPE_AGENT: 'off' }, app);
      children.push(c);
      return c;
    };

    beforeAll(async () => {
      app = (await installApp({ 'prom-client': version })).dir;
      copyFileSync(EXAMPLE, join(app, 'server.cjs'));
    }, 300_000);
    afterAll(async () => {
      for (const c of children) await c.stop();
      if (app !== '') rmSync(app, { recursive: true, force: true });
    });

    it('installs one prom-client, the app’s (a peer dependency)', () => {
      expect(existsSync(join(app, 'node_modules/prom-client'))).toBe(true);
      expect(existsSync(join(app, 'node_modules/streamscope/node_modules/prom-client'))).toBe(false);
    });

    it('instrument(): the stream series are in require("prom-client").register', async () => {
      await exercise(await start(['server.cjs']), version);
    }, 60_000);

    it('register mode: the stream series are in require("prom-client").register', async () => {
      const flag = version.startsWith('14') ? '--require' : '--import';
      const c = await start([flag, 'streamscope/register', 'server.cjs']);
      expect(c.hello.registered).toBe(true);
      await exercise(c, version);
    }, 60_000);

    it('streamscope linked from a folder that has its own prom-client: still the app’s register', async () => {
      // `npm link` / `file:` folder installs: streamscope's real path is this repository, whose
      // node_modules holds prom-client 15.1.3 (a devDependency). The app's copy must win.
      rmSync(join(app, 'node_modules/streamscope'), { recursive: true, force: true });
      symlinkSync(ROOT, join(app, 'node_modules/streamscope'), 'dir');
      await exercise(await start(['server.cjs']), version);
      await exercise(await start(['--import', 'streamscope/register', 'server.cjs']), version);
    }, 60_000);
  });
}
