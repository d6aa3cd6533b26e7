import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { get, parseExposition, sum, until, type Sample } from './helpers/http.js';
import { h2get, selfSignedCert } from './helpers/h2.js';
import { exampleAsApp, installApp, installedVersion, type App } from './helpers/tarball.js';

// examples/hono.ts and examples/http2.ts, run as a user would: the `npm pack` tarball installed into a new app
// folder with the real hono and @hono/node-server, real clients; the metrics must match what the clients saw.

const children: ChildProcess[] = [];
let app: App;

beforeAll(async () => {
  app = await installApp(
    { hono: installedVersion('hono'), '@hono/node-server': installedVersion('@hono/node-server'), 'prom-client': installedVersion('prom-client') },
    'module',
  );
}, 360_000);

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await exited;
    }
  }
  app.remove();
});

/** Starts `node file` in the app folder; resolves with the ports named by the `… on <scheme>://127.0.0.1:<port>` lines. */
function start(file: string, labels: string[], env: NodeJS.ProcessEnv = {}): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [file], { cwd: app.dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(proc);
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`example did not start: ${out}${err}`)), 30_000);
    proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    proc.on('exit', (code) => reject(new Error(`example exited with ${code}: ${err}`)));
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const ports: Record<string, number> = {};
      for (const l of labels) {
        const m = new RegExp(`${l} on \\w+://127\\.0\\.0\\.1:(\\d+)`).exec(out);
        if (m) ports[l] = Number(m[1]);
      }
      if (Object.keys(ports).length === labels.length) {
        clearTimeout(timer);
        resolve(ports);
      }
    });
  });
}

async function metrics(port: number): Promise<Sample[]> {
  return parseExposition((await get(`http://127.0.0.1:${port}/metrics`)).body.toString()).samples;
}

/** GET over HTTP/1.1; with `abortAfter`, the client closes the connection once that many bytes arrived. */
function get1(url: string, abortAfter?: number): Promise<{ bytes: number; body: string; aborted: boolean }> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let body = '';
    const req = http.get(url, { agent: false }, (res) => {
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        body += c.toString();
        if (abortAfter !== undefined && bytes >= abortAfter) {
          req.destroy();
          resolve({ bytes, body, aborted: true });
        }
      });
      res.on('end', () => resolve({ bytes, body, aborted: false }));
    });
    req.on('error', (e) => (abortAfter !== undefined ? undefined : reject(e)));
  });
}

const completed = (m: Sample[], route: string): number => sum(m, 'stream_duration_seconds_count', { route, outcome: 'completed' });

describe('examples through the packed tarball', () => {
  it('examples/hono.ts: streamSSE, stream(), a Web ReadableStream body and a bare fetch handler, labelled by route template', async () => {
    const file = await exampleAsApp('hono.ts', app, 'hono-example.mjs');
    const ports = await start(file, ['hono example', 'fetch handler', 'metrics']);
    const base = `http://127.0.0.1:${ports['hono example']}`;

    const general = await get1(`${base}/sse/general?n=4`);
    const lobby = await get1(`${base}/sse/lobby?n=3`);
    expect(general.body.match(/^data: /gm)).toHaveLength(4);
    expect(lobby.body.match(/^data: /gm)).toHaveLength(3);
    const tokens = await get1(`${base}/tokens?n=6`);
    expect(tokens.body.trim().split('\n')).toHaveLength(6);
    const raw = await get1(`${base}/raw?n=5`);
    expect(raw.body.trim().split('\n')).toHaveLength(5);
    const bare = await get1(`http://127.0.0.1:${ports['fetch handler']}/anything/at/all?n=2`);
    expect(bare.body.trim().split('\n')).toHaveLength(2);
    // the client leaves a Web Streams body halfway: @hono/node-server cancels the ReadableStream
    const left = await get1(`${base}/raw?n=100000`, 60);
    expect(left.aborted).toBe(true);

    const mport = ports.metrics!;
    await until(async () => sum(await metrics(mport), 'stream_duration_seconds_count') >= 6, 'six closed streams', 15_000).catch(() => undefined);
    const m = await metrics(mport);
    expect(sum(m, 'stream_started_total', { route: '/sse/:room' })).toBe(2); // the template, never /sse/general
    expect(completed(m, '/sse/:room')).toBe(2);
    expect(sum(m, 'stream_bytes_written_total', { route: '/sse/:room' })).toBe(general.bytes + lobby.bytes);
    expect(completed(m, '/tokens')).toBe(1);
    expect(sum(m, 'stream_bytes_written_total', { route: '/tokens' })).toBe(tokens.bytes);
    expect(completed(m, '/fetch')).toBe(1);
    expect(sum(m, 'stream_bytes_written_total', { route: '/fetch' })).toBe(bare.bytes);
    expect(completed(m, '/raw')).toBe(1);
    expect(sum(m, 'stream_duration_seconds_count', { route: '/raw', outcome: 'client_aborted' })).toBe(1);
    expect(sum(m, 'stream_bytes_written_total', { route: '/raw' })).toBeGreaterThanOrEqual(raw.bytes + left.bytes);
    expect(sum(m, 'stream_writes_after_close_total')).toBe(0); // the producer stopped at the cancel
    expect(sum(m, 'stream_active_connections')).toBe(0);
    expect(sum(m, 'stream_started_total')).toBe(sum(m, 'stream_duration_seconds_count'));
    expect(m.filter((s) => s.name === 'stream_started_total' && /general|lobby|anything/.test(s.labels.route ?? ''))).toEqual([]);
    expect(sum(m, 'streamscope_internal_errors_total')).toBe(0);
  }, 120_000);

  for (const secure of [false, true]) {
    it(`examples/http2.ts over ${secure ? 'TLS' : 'h2c'}: sse() and a compat handler, stream events, a client reset`, async () => {
      const file = await exampleAsApp('http2.ts', app, 'http2-example.mjs');
      let env: NodeJS.ProcessEnv = {};
      let ca: Buffer | undefined;
      let certDir: string | undefined;
      if (secure) {
        const tls = selfSignedCert();
        ca = tls.cert;
        certDir = mkdtempSync(join(tmpdir(), 'streamscope-h2-ex-'));
        writeFileSync(join(certDir, 'key.pem'), tls.key, { mode: 0o600 });
        writeFileSync(join(certDir, 'cert.pem'), tls.cert);
        env = { TLS_KEY: join(certDir, 'key.pem'), TLS_CERT: join(certDir, 'cert.pem') };
      }
      const sessions: http2.ClientHttp2Session[] = [];
      try {
        const ports = await start(file, ['http2 example', 'stream events', 'metrics'], env);
        const connect = (port: number): http2.ClientHttp2Session => {
          const s = secure ? http2.connect(`https://localhost:${port}`, { ca }) : http2.connect(`http://127.0.0.1:${port}`);
          s.on('error', () => undefined);
          sessions.push(s);
          return s;
        };
        const appSession = connect(ports['http2 example']!);
        const streamSession = connect(ports['stream events']!);
        const sse7 = await h2get(appSession, '/sse/7?n=4');
        const sse8 = await h2get(appSession, '/sse/8?n=2');
        expect(sse7.body.toString().match(/^data: /gm)).toHaveLength(4);
        expect(sse7.headers.connection).toBeUndefined();
        const nd = await h2get(appSession, '/ndjson?n=5');
        expect(nd.body.toString().trim().split('\n')).toHaveLength(5);
        const ndReset = await h2get(appSession, '/ndjson?n=100000', { resetAfter: 100 });
        const tok = await h2get(streamSession, '/tokens?n=6');
        expect(tok.body.toString().trim().split('\n')).toHaveLength(6);
        const tokReset = await h2get(streamSession, '/tokens?n=100000', { resetAfter: 100 });
        expect(ndReset.reset && tokReset.reset).toBe(true);

        const mport = ports.metrics!;
        await until(async () => sum(await metrics(mport), 'stream_duration_seconds_count') >= 6, 'six closed streams', 15_000).catch(() => undefined);
        const m = await metrics(mport);
        expect(completed(m, '/sse/:id')).toBe(2);
        expect(sum(m, 'stream_bytes_written_total', { route: '/sse/:id' })).toBe(sse7.bytes + sse8.bytes);
        expect(completed(m, '/ndjson')).toBe(1);
        expect(completed(m, '/tokens')).toBe(1);
        expect(sum(m, 'stream_duration_seconds_count', { route: '/ndjson', outcome: 'client_aborted' })).toBe(1);
        expect(sum(m, 'stream_duration_seconds_count', { route: '/tokens', outcome: 'client_aborted' })).toBe(1);
        expect(sum(m, 'stream_bytes_written_total', { route: '/ndjson' })).toBeGreaterThanOrEqual(nd.bytes + ndReset.bytes);
        expect(sum(m, 'stream_bytes_written_total', { route: '/tokens' })).toBeGreaterThanOrEqual(tok.bytes + tokReset.bytes);
        expect(sum(m, 'stream_writes_after_close_total')).toBe(0); // both producers stop at the reset
        expect(sum(m, 'stream_active_connections')).toBe(0);
        expect(sum(m, 'stream_started_total')).toBe(6);
        expect(sum(m, 'streamscope_internal_errors_total')).toBe(0);
      } finally {
        for (const s of sessions) s.destroy();
        if (certDir) rmSync(certDir, { recursive: true, force: true });
      }
    }, 120_000);
  }
});
