import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Registry } from 'prom-client';
import { pumpUntilClosed, scrape, sleep, startServer, sum } from './helpers/http.js';

/**
 * A healthy service gives zero live findings, through the built package: keep-alive clients running
 * completed streams back to back (and their sockets idle between them), long-lived SSE streams that
 * heartbeat past every threshold, a client that reads slowly but steadily from a producer that honours
 * backpressure, and a client that leaves while the producer stops at once — with trackAsync and short
 * thresholds, so every detector is watching.
 */

const dist = resolve('dist/esm/index.js');
type Lib = typeof import('../src/index.js');
let ss: Lib;
beforeAll(async () => {
  if (!existsSync(dist)) throw new Error('dist/esm/index.js is missing: run `npm run build` first');
  ss = (await import(dist)) as Lib;
});

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

const STALL = 3000;
const DANGLE = 500;

describe('a healthy service', () => {
  it('keep-alive streams, idle sockets, long-lived heartbeats, a slow reader and a polite producer: zero findings, stream_stalled 0, health ok', async () => {
    const registry = new Registry();
    const findings: string[] = [];
    cleanup.push(ss.onFinding((f) => findings.push(`${f.kind} ${f.route}: ${f.detail}`)));
    const health = ss.healthHandler();
    const handler = ss.instrument(
      async (req: http.IncomingMessage, res: http.ServerResponse) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        if (req.url === '/short') {
          for (let i = 0; i < 5; i++) {
            res.write(`data: ${i}\n\n`);
            await sleep(3);
          }
          res.end();
        } else if (req.url === '/live') {
          const beat = setInterval(() => res.write(': beat\n\n'), 200);
          await new Promise((r) => res.on('close', r));
          clearInterval(beat);
        } else if (req.url === '/bulk') {
          await pumpUntilClosed(res);
        } else {
          // polite: stops at once when the client leaves
          const ac = new AbortController();
          res.on('close', () => ac.abort());
          while (!ac.signal.aborted) {
            res.write('data: x\n\n');
            await sleep(20);
          }
        }
      },
      { registry, route: (req) => req.url, trackAsync: true, stallAfterMs: STALL, danglingAfterMs: DANGLE },
    );
    const srv = await startServer((req, res) => {
      if (req.url?.startsWith('/healthz')) return health(req, res);
      void handler(req, res);
    });
    cleanup.push(() => srv.close());

    // long-lived streams
    const live: http.ClientRequest[] = [];
    for (let i = 0; i < 3; i++) {
      const req = http.get(`${srv.url}/live`, { agent: false }, (r) => r.resume());
      req.on('error', () => undefined);
      live.push(req);
    }
    cleanup.push(() => live.forEach((r) => r.destroy()));
    // a slow but steady reader (~110 KB/s)
    const slow = net.connect({ port: srv.port, host: '127.0.0.1' }, () => slow.write('GET /bulk HTTP/1.1\r\nHost: x\r\n\r\n'));
    let allowance = 0;
    let slowGot = 0;
    slow.on('data', (c: Buffer) => {
      slowGot += c.length;
      allowance -= c.length;
      if (allowance <= 0) slow.pause();
    });
    slow.pause();
    const tick = setInterval(() => {
      allowance += 11_000;
      if (allowance > 0) slow.resume();
    }, 100);
    cleanup.push(() => {
      clearInterval(tick);
      slow.destroy();
    });
    // keep-alive clients: completed streams back to back, then idle sockets
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    cleanup.push(() => agent.destroy());
    const t0 = Date.now();
    let rounds = 0;
    while (Date.now() - t0 < STALL * 2 + 1000) {
      await Promise.all(
        [0, 1, 2, 3].map(
          () =>
            new Promise<void>((r, j) => {
              http.get(`${srv.url}/short`, { agent }, (res) => {
                res.resume();
                res.on('end', () => r());
              }).on('error', j);
            }),
        ),
      );
      // a polite producer whose client leaves
      await new Promise<void>((r) => {
        const req = http.get(`${srv.url}/polite`, { agent: false }, (res) => {
          res.once('data', () => {
            req.destroy();
            r();
          });
        });
        req.on('error', () => r());
      });
      rounds++;
      await sleep(400); // the keep-alive sockets sit idle
      expect(sum(await scrape(registry), 'stream_stalled')).toBe(0);
    }
    await sleep(DANGLE * 2 + 500); // past danglingAfterMs for the last closed streams
    const h = await new Promise<{ status: string; streams: { stalled: number; dangling: number } }>((res, rej) => {
      http.get(`${srv.url}/healthz?probe=stream`, { agent: false }, (r) => {
        let b = '';
        r.on('data', (c: Buffer) => (b += c.toString()));
        r.on('end', () => res(JSON.parse(b) as { status: string; streams: { stalled: number; dangling: number } }));
      }).on('error', rej);
    });
    const samples = await scrape(registry);
    // the traffic happened as described
    expect(rounds).toBeGreaterThan(3);
    expect(sum(samples, 'stream_duration_seconds_count', { route: '/short', outcome: 'completed' })).toBe(rounds * 4);
    expect(sum(samples, 'stream_duration_seconds_count', { route: '/polite', outcome: 'client_aborted' })).toBe(rounds);
    expect(ss.streams().filter((s) => s.route === '/live')).toHaveLength(3);
    expect(slowGot).toBeGreaterThan(400_000); // ~110 KB/s for several seconds: slow, but reading
    expect(ss.streams().find((s) => s.route === '/bulk')?.blockedWrites).toBeGreaterThan(0);
    // and nothing was found
    expect(findings).toEqual([]);
    expect(sum(samples, 'stream_leaks_total')).toBe(0);
    expect(sum(samples, 'stream_stalled')).toBe(0);
    expect(h.status).toBe('ok');
    expect(h.streams).toMatchObject({ stalled: 0, dangling: 0 });
  });
});
