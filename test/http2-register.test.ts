import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import https from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { get, parseExposition, sum, until, type Sample } from './helpers/http.js';
import { freePort, spawnNode, type Child } from './helpers/child.js';
import { h2get, selfSignedCert } from './helpers/h2.js';

// `node --import streamscope/register` (and --require) on an app with the three kinds of HTTP/2 server:
// the built package, a child process, real clients; the metrics must match what the clients received.

let dir: string;
let tls: { key: Buffer; cert: Buffer };

beforeAll(() => {
  tls = selfSignedCert();
  dir = mkdtempSync(join(tmpdir(), 'streamscope-h2-app-'));
  writeFileSync(join(dir, 'key.pem'), tls.key, { mode: 0o600 });
  writeFileSync(join(dir, 'cert.pem'), tls.cert);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function https1(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path, ca: tls.cert, servername: 'localhost', agent: false }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => (n += c.length));
      res.on('end', () => resolve(n));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

async function metrics(port: number): Promise<Sample[]> {
  return parseExposition((await get(`http://127.0.0.1:${port}/metrics`)).body.toString()).samples;
}

describe('zero-code start on HTTP/2 servers', () => {
  for (const flag of ['--import', '--require']) {
    it(`node ${flag} streamscope/register: createServer, createSecureServer and allowHTTP1 all report, counts match the clients`, async () => {
      const metricsPort = await freePort();
      let child: Child | undefined;
      const sessions: http2.ClientHttp2Session[] = [];
      try {
        child = await spawnNode([flag, 'streamscope/register', 'test/fixtures/h2-app.mjs'], {
          STREAMSCOPE_METRICS_PORT: String(metricsPort),
          STREAMSCOPE_METRICS_HOST: '127.0.0.1',
          H2_KEY: join(dir, 'key.pem'),
          H2_CERT: join(dir, 'cert.pem'),
        });
        const ports = child.hello as { h2c: number; tls: number; mixed: number };
        const connect = (url: string): http2.ClientHttp2Session => {
          const s = http2.connect(url, { ca: tls.cert });
          s.on('error', () => undefined);
          sessions.push(s);
          return s;
        };
        const clients = {
          h2c: connect(`http://127.0.0.1:${ports.h2c}`),
          tls: connect(`https://localhost:${ports.tls}`),
          mixed: connect(`https://localhost:${ports.mixed}`),
        };
        const seen: Record<string, number> = {};
        const resetSeen: Record<string, number> = {};
        for (const [name, session] of Object.entries(clients)) {
          for (let i = 0; i < 3; i++) {
            const r = await h2get(session, `/${name}/${i}`);
            expect(r.status).toBe(200);
            seen[name] = (seen[name] ?? 0) + r.bytes;
          }
          const r = await h2get(session, `/${name}/reset`, { resetAfter: 250 });
          expect(r.reset).toBe(true);
          resetSeen[name] = r.bytes;
        }
        // HTTP/1.1 on the allowHTTP1 server (node:http's path, diagnostics_channel)
        let http1 = 0;
        for (let i = 0; i < 2; i++) http1 += await https1(ports.mixed, `/mixed/${i}`);

        await until(async () => sum(await metrics(metricsPort), 'stream_duration_seconds_count') >= 14, '14 closed streams', 15_000).catch(() => undefined);
        const m = await metrics(metricsPort);
        expect(sum(m, 'stream_started_total')).toBe(14);
        expect(sum(m, 'stream_duration_seconds_count')).toBe(14);
        expect(sum(m, 'stream_duration_seconds_count', { outcome: 'completed' })).toBe(11);
        expect(sum(m, 'stream_duration_seconds_count', { outcome: 'client_aborted' })).toBe(3);
        expect(sum(m, 'stream_bytes_written_total', { route: '/h2c/:id' })).toBe(seen.h2c);
        expect(sum(m, 'stream_bytes_written_total', { route: '/tls/:id' })).toBe(seen.tls);
        expect(sum(m, 'stream_bytes_written_total', { route: '/mixed/:id' })).toBe(seen.mixed! + http1);
        for (const name of ['h2c', 'tls', 'mixed']) {
          // the producers stop at the reset: the bytes counted were written before it, and cover what arrived
          expect(sum(m, 'stream_bytes_written_total', { route: `/${name}/reset` })).toBeGreaterThanOrEqual(resetSeen[name]!);
          expect(sum(m, 'stream_duration_seconds_count', { route: `/${name}/reset`, outcome: 'client_aborted' })).toBe(1);
        }
        expect(sum(m, 'stream_active_connections')).toBe(0);
        expect(sum(m, 'streamscope_internal_errors_total')).toBe(0);
        expect(child.stderr()).toBe('');
      } finally {
        for (const s of sessions) s.destroy();
        await child?.stop();
      }
    });
  }
});
