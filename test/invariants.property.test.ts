import { describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { instrument, streams } from '../src/index.js';
import { scrape, sleep, startServer, sum, until } from './helpers/http.js';

/**
 * Randomized load: completion, client aborts at random points, handler throws, slow readers and
 * res.destroy(), on keep-alive and fresh connections. Afterwards the active gauge is 0 on every
 * route and every started stream has exactly one outcome.
 */

type Behaviour = 'complete' | 'throw' | 'reject' | 'destroy' | 'never-end';
type ClientKind = 'read' | 'abort' | 'slow' | 'keepalive';

interface Plan {
  behaviour: Behaviour;
  writes: number;
  gapMs: number;
  client: ClientKind;
  abortAfter: number;
  route: number;
}

const plan = fc.record({
  behaviour: fc.constantFrom<Behaviour>('complete', 'complete', 'complete', 'throw', 'reject', 'destroy', 'never-end'),
  writes: fc.integer({ min: 1, max: 12 }),
  gapMs: fc.integer({ min: 0, max: 3 }),
  client: fc.constantFrom<ClientKind>('read', 'abort', 'slow', 'keepalive'),
  abortAfter: fc.integer({ min: 0, max: 400 }),
  route: fc.integer({ min: 0, max: 3 }),
});

describe('invariants under randomized load', () => {
  it('2,000+ streams: active gauge returns to 0, _count of durations equals streams started', async () => {
    const registry = new Registry();
    const plans = new Map<string, Plan>();
    const handler = instrument(
      async (req: http.IncomingMessage, res: http.ServerResponse) => {
        const p = plans.get(req.url!.split('?')[0]!.slice(1).split('/')[1]!)!;
        res.writeHead(200, { 'Content-Type': p.route % 2 ? 'text/event-stream' : 'application/x-ndjson' });
        const big = 'z'.repeat(p.client === 'slow' ? 16_384 : 32);
        for (let i = 0; i < p.writes; i++) {
          if (res.destroyed) return;
          res.write(`data: ${i} ${big}\n\n`);
          if (p.gapMs) await sleep(p.gapMs);
          else await Promise.resolve();
          if (p.behaviour === 'throw' && i === p.writes - 1) throw new Error('handler failed');
          if (p.behaviour === 'destroy' && i === p.writes - 1) return void res.destroy();
        }
        if (p.behaviour === 'reject') return Promise.reject(new Error('rejected'));
        if (p.behaviour === 'never-end') return; // the client's abort or the server's timeout ends it
        res.end();
      },
      { registry, route: (req) => `/r${req.url!.split('/')[1]}` },
    );
    const srv = await startServer((req, res) => {
      let ret: unknown;
      try {
        ret = handler(req, res);
      } catch {
        res.destroy();
        return;
      }
      if (ret instanceof Promise) ret.catch(() => res.destroy());
    });
    srv.server.setTimeout(400);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

    function run(id: string, p: Plan): Promise<void> {
      plans.set(id, p);
      const path = `/${p.route}/${id}`;
      return new Promise<void>((resolve) => {
        let settled = false;
        const done = (): void => {
          if (!settled) {
            settled = true;
            resolve();
          }
        };
        const req = http.get(srv.url + path, { agent: p.client === 'keepalive' ? agent : false }, (res) => {
          res.on('error', done);
          res.on('close', done);
          res.on('end', done);
          if (p.client === 'abort') {
            let got = 0;
            res.on('data', (c: Buffer) => {
              got += c.length;
              if (got >= p.abortAfter) req.destroy();
            });
          } else if (p.client === 'slow') {
            res.on('data', () => {
              res.pause();
              setTimeout(() => res.resume(), 2);
            });
          } else res.resume();
        });
        req.on('error', done);
        req.on('close', done);
      });
    }

    let total = 0;
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(plan, { minLength: 100, maxLength: 100 }), async (batch) => {
        await Promise.all(batch.map((p) => run(String(n++), p)));
        total += batch.length;
      }),
      { numRuns: 21, seed: Number(process.env.FC_SEED ?? Date.now() % 2 ** 31) },
    );
    expect(total).toBeGreaterThanOrEqual(2000);

    // a few raw sockets that reset mid-response
    for (let i = 0; i < 20; i++) {
      const id = String(n++);
      plans.set(id, { behaviour: 'never-end', writes: 3, gapMs: 1, client: 'abort', abortAfter: 0, route: 1 });
      const sock = net.connect(srv.port, '127.0.0.1', () => sock.write(`GET /1/${id} HTTP/1.1\r\nHost: x\r\n\r\n`));
      sock.on('error', () => undefined);
      sock.once('data', () => sock.resetAndDestroy());
    }

    await until(async () => sum(await scrape(registry), 'stream_active_connections') === 0 && streams().length === 0, 'all streams to close', 20_000);
    const samples = await scrape(registry);
    const started = sum(samples, 'stream_started_total');
    const finished = sum(samples, 'stream_duration_seconds_count');
    expect(started).toBeGreaterThanOrEqual(2000);
    expect(finished).toBe(started);
    for (const s of samples.filter((x) => x.name === 'stream_active_connections')) expect(s.value, s.labels.route).toBe(0);
    // every outcome kind that the load can produce did occur
    for (const o of ['completed', 'client_aborted', 'error', 'timeout']) {
      expect(sum(samples, 'stream_duration_seconds_count', { outcome: o }), o).toBeGreaterThan(0);
    }
    // per route too: started == finished
    const routes = new Set(samples.filter((s) => s.name === 'stream_started_total').map((s) => s.labels.route!));
    for (const r of routes) expect(sum(samples, 'stream_duration_seconds_count', { route: r }), r).toBe(sum(samples, 'stream_started_total', { route: r }));
    agent.destroy();
    await srv.close();
  }, 120_000);
});
