import { afterEach, describe, expect, it, vi } from 'vitest';
import http from 'node:http';
import fc from 'fast-check';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { instrument, metricsHandler, streams } from '../src/index.js';
import { getMetricsSet, LEAK_KINDS, RESUME_RESULTS } from '../src/consumers/metrics.js';
import { expositionStats, fastMetrics } from '../src/consumers/exposition.js';
import { GUARD_NAMES } from '../src/consumers/guards.js';
import { parseExposition, serverPool, sum, until } from './helpers/http.js';

/**
 * metricsHandler() renders streamscope's own families itself (src/consumers/exposition.ts, docs/metrics.md
 * "Scrape cost"): its text must be the text registry.metrics() gives for the same state, byte for byte, whatever
 * the route values, prefix, default labels, content type, resets and the app's own metrics around ours.
 */

const OPENMETRICS = 'application/openmetrics-text; version=1.0.0; charset=utf-8';
const OUTCOMES = ['completed', 'client_aborted', 'error', 'timeout'];

/** metricsHandler()'s body and content type, through a stub response (no socket: the text is the point). */
async function served(registry: Registry): Promise<{ body: string; type: string; status: number }> {
  let body = '';
  let type = '';
  const res = {
    statusCode: 0,
    setHeader(_n: string, v: string) {
      type = v;
    },
    end(b: string) {
      body = String(b);
    },
  };
  await metricsHandler(registry)({} as http.IncomingMessage, res as unknown as http.ServerResponse);
  return { body, type, status: res.statusCode };
}

/** Label values with everything the clients escape: quotes, backslashes (also before `n`), newlines. */
const tricky = fc.string({ unit: fc.constantFrom('a', 'n', '/', '"', '\\', '\n', 'é', ' '), minLength: 1, maxLength: 8 });

type Op =
  | { op: 'stream'; r: number; method: string; outcome: string; v: number }
  | { op: 'write'; r: number; bytes: number }
  | { op: 'leak'; r: number; kind: string }
  | { op: 'resume'; r: number; result: string }
  | { op: 'reject'; r: number; reason: string }
  | { op: 'guard'; r: number; guard: string }
  | { op: 'gap'; r: number; v: number | null }
  | { op: 'app'; v: number }
  | { op: 'reset' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('stream' as const), r: fc.nat(5), method: fc.constantFrom('GET', 'POST'), outcome: fc.constantFrom(...OUTCOMES), v: fc.double({ min: 0, max: 20_000, noNaN: true }) }),
  fc.record({ op: fc.constant('write' as const), r: fc.nat(5), bytes: fc.nat(10_000) }),
  fc.record({ op: fc.constant('leak' as const), r: fc.nat(5), kind: fc.constantFrom(...LEAK_KINDS) }),
  fc.record({ op: fc.constant('resume' as const), r: fc.nat(5), result: fc.constantFrom(...RESUME_RESULTS) }),
  fc.record({ op: fc.constant('reject' as const), r: fc.nat(5), reason: fc.constantFrom('rate_limited', 'overloaded') }),
  fc.record({ op: fc.constant('guard' as const), r: fc.nat(5), guard: fc.constantFrom(...GUARD_NAMES) }),
  fc.record({ op: fc.constant('gap' as const), r: fc.nat(5), v: fc.option(fc.double({ min: 0, max: 100, noNaN: true })) }),
  fc.record({ op: fc.constant('app' as const), v: fc.double({ min: -5, max: 5, noNaN: true }) }),
  fc.constant({ op: 'reset' as const }),
);

afterEach(() => {
  vi.restoreAllMocks();
});

describe('metricsHandler(): streamscope renders its own series', () => {
  it('gives the text registry.metrics() gives, byte for byte, for a random state, without calling it', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          prefix: fc.constantFrom('', 'app_'),
          routes: fc.uniqueArray(tricky, { minLength: 1, maxLength: 6 }),
          defaults: fc.option(fc.dictionary(fc.constantFrom('app', 'env', 'route', 'kind', 'zone'), tricky, { maxKeys: 3 })),
          om: fc.boolean(),
          ops: fc.array(opArb, { maxLength: 80 }),
          scrapes: fc.integer({ min: 1, max: 3 }),
        }),
        async ({ prefix, routes, defaults, om, ops, scrapes }) => {
          const registry = new Registry();
          if (om) (registry as unknown as { setContentType(t: string): void }).setContentType(OPENMETRICS);
          // the app's own metrics before and after streamscope's, in the registry's order
          const appCounter = new Counter({ name: 'app_requests_total', help: 'the app\'s "own"\\counter', labelNames: ['route'], registers: [registry] });
          const set = getMetricsSet(registry, prefix, 4);
          const appHist = new Histogram({ name: 'app_latency_seconds', help: 'h', labelNames: ['route'], buckets: [0.1, 1], registers: [registry] });
          const appGauge = new Gauge({ name: 'app_temperature', help: 'g', registers: [registry] });
          if (defaults !== null) registry.setDefaultLabels(defaults);
          // a route made once and never used: its histogram children are empty
          const rms = routes.map((r) => set.route(r));
          const scrapeAt = new Set(Array.from({ length: scrapes - 1 }, (_, i) => Math.floor(((i + 1) * ops.length) / scrapes)));
          const metricsSpy = vi.spyOn(Registry.prototype, 'metrics');
          for (let i = 0; i <= ops.length; i++) {
            if (scrapeAt.has(i) || i === ops.length) {
              metricsSpy.mockClear();
              const fastBefore = expositionStats.fast;
              const mine = await served(registry);
              // the path is taken: the client's metrics() is not called, the fast path counted once
              expect(metricsSpy).not.toHaveBeenCalled();
              expect(expositionStats.fast).toBe(fastBefore + 1);
              expect(mine.status).toBe(200);
              expect(mine.type).toBe(registry.contentType);
              expect(mine.body).toBe(await registry.metrics());
            }
            const o = ops[i];
            if (o === undefined) break;
            const rm = rms['r' in o ? o.r % rms.length : 0]!;
            switch (o.op) {
              case 'stream':
                rm.started(o.method);
                rm.duration(o.method, o.outcome).observe(o.v);
                rm.firstWrite.observe(o.v / 100);
                rm.longestGap.observe(o.v / 10);
                break;
              case 'write':
                rm.totals.bytes += o.bytes;
                rm.totals.writes++;
                rm.totals.blocked += o.bytes % 2;
                rm.active = o.bytes % 3;
                break;
              case 'leak':
                rm.leak(o.kind).inc();
                break;
              case 'resume':
                rm.resume(o.result).inc();
                break;
              case 'reject':
                rm.rejected(o.reason).inc();
                break;
              case 'guard':
                rm.guardAction(o.guard).inc();
                break;
              case 'gap':
                if (o.v === null) rm.writeGap();
                else rm.writeGap().observe(o.v);
                break;
              case 'app':
                appCounter.inc({ route: routes[0]! }, Math.abs(o.v));
                appHist.observe({ route: routes[0]! }, o.v);
                appGauge.set(o.v);
                break;
              case 'reset':
                registry.resetMetrics();
                break;
            }
          }
        },
      ),
      { numRuns: 120 },
    );
  }, 120_000);

  it('a histogram child reset and observed back to the count it had shows its new buckets (its cached text is not reused)', async () => {
    const registry = new Registry();
    const rm = getMetricsSet(registry, '', 10).route('/r');
    rm.firstWrite.observe(0.001);
    rm.firstWrite.observe(0.002);
    expect((await served(registry)).body).toBe(await registry.metrics());
    registry.resetMetrics();
    rm.firstWrite.observe(20);
    rm.firstWrite.observe(40);
    const { body } = await served(registry);
    expect(body).toBe(await registry.metrics());
    expect(body).toContain('stream_first_write_seconds_bucket{le="0.005",route="/r"} 0\n');
    expect(body).toContain('stream_first_write_seconds_sum{route="/r"} 60\n');
  });

  it('leaves a registry whose metrics() the app replaced, or a subclass that overrides it, to that metrics()', async () => {
    const own = new Registry();
    getMetricsSet(own, '', 10).route('/x');
    own.metrics = () => Promise.resolve('# the app\'s own text\n');
    expect((await served(own)).body).toBe('# the app\'s own text\n');

    class Filtered extends Registry {
      override async metrics(): Promise<string> {
        return (await super.metrics()).split('\n').filter((l) => !l.includes('/secret')).join('\n');
      }
    }
    const sub = new Filtered();
    const set = getMetricsSet(sub, '', 10);
    set.route('/secret').totals.bytes += 5;
    set.route('/open').totals.bytes += 7;
    const fallbackBefore = expositionStats.fallback;
    const body = (await served(sub)).body;
    expect(expositionStats.fallback).toBe(fallbackBefore + 1);
    expect(body).toBe(await sub.metrics());
    expect(body).not.toContain('/secret');
    expect(body).toContain('stream_bytes_written_total{route="/open"} 7');
  });

  it('a registry without streamscope metrics is the client\'s text', async () => {
    const r = new Registry();
    new Counter({ name: 'only_app_total', help: 'x', registers: [r] }).inc(2);
    expect((await served(r)).body).toBe(await r.metrics());
    expect(await fastMetrics(r)).toBeUndefined();
  });
});

describe('metricsHandler() over real streams still open', () => {
  const serve = serverPool(afterEach);
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    while (cleanup.length) cleanup.pop()!();
  });

  it('counts every byte and write of the open streams up to the scrape, the same text as registry.metrics()', async () => {
    const registry = new Registry();
    const route = '/fast "open"\\';
    const out: http.ServerResponse[] = [];
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: hi\n\n');
          out.push(res);
        },
        { registry, route },
      ),
    );
    const N = 4;
    await Promise.all(
      Array.from(
        { length: N },
        () =>
          new Promise<void>((resolve, reject) => {
            const req = http.get(srv.url, { agent: false }, (res) => {
              res.once('data', () => resolve());
              res.resume();
            });
            req.on('error', reject);
            cleanup.push(() => req.destroy());
          }),
      ),
    );
    await until(() => streams().filter((s) => s.route === route).length === N, `${N} streams open`);
    let bytes = N * 'data: hi\n\n'.length;
    let writes = N;
    // as the exposition spells it (the test parser keeps label values escaped)
    const labels = { route: route.replace(/\\/g, '\\\\').replace(/"/g, '\\"') };
    for (let round = 1; round <= 5; round++) {
      for (const res of out) {
        const c = Buffer.alloc(37 * round, 'y');
        res.write(c);
        bytes += c.length;
        writes++;
      }
      // written and scraped in one synchronous run: the fast path collects in its own first pass
      const { body } = await served(registry);
      const samples = parseExposition(body).samples;
      expect(sum(samples, 'stream_bytes_written_total', labels), `round ${round}`).toBe(bytes);
      expect(sum(samples, 'stream_writes_total', labels), `round ${round}`).toBe(writes);
      expect(sum(samples, 'stream_active_connections', labels)).toBe(N);
      expect(body).toBe(await registry.metrics());
      await new Promise((r) => setTimeout(r, 20 * round));
    }
    for (const res of out) res.end();
  });
});
