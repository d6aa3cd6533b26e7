import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { Registry } from 'prom-client';
import { instrument, streams } from '../src/index.js';
import { DURATION_BUCKETS } from '../src/consumers/metrics.js';
import { DESIGN_METRICS } from '../dashboards/contract.js';
import { get, parseExposition, scrape, serverPool, sum, until } from './helpers/http.js';

const serve = serverPool(afterEach);

// The table of docs/metrics.md (held equal to DESIGN.md's in test/metrics-docs.test.ts).
const CONTRACT: Array<[string, string, string[]]> = Object.entries(DESIGN_METRICS).map(([name, m]) => [name, m.type, m.labels]);

const sse = (n: number, gapMs = 2): http.RequestListener =>
  async (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    for (let i = 0; i < n; i++) {
      res.write(`data: ${i}\n\n`);
      await new Promise((r) => setTimeout(r, gapMs));
    }
    res.end();
  };

describe('metrics of the contract', () => {
  it('registers every metric with its exact name, type and label names', async () => {
    const registry = new Registry();
    const srv = await serve(instrument(sse(3), { registry, route: '/events' }));
    await get(srv.url + '/events');
    const metrics = await registry.getMetricsAsJSON();
    for (const [name, type, labels] of CONTRACT) {
      const m = metrics.find((x) => x.name === name);
      expect(m, name).toBeDefined();
      expect(m!.type, name).toBe(type);
      const hasLabels = (registry.getSingleMetric(name) as unknown as { labelNames: string[] }).labelNames;
      expect(hasLabels, name).toEqual(labels);
    }
  });

  it('uses the contract buckets for stream_duration_seconds', async () => {
    const registry = new Registry();
    const srv = await serve(instrument(sse(2), { registry, route: '/b' }));
    await get(srv.url);
    const text = await registry.metrics();
    const les = parseExposition(text)
      .samples.filter((s) => s.name === 'stream_duration_seconds_bucket')
      .map((s) => s.labels.le);
    expect(les).toEqual([...DURATION_BUCKETS.map(String), '+Inf']);
    expect(DURATION_BUCKETS).toEqual([0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400]);
  });

  it('counts bytes and writes of a stream exactly, and the active gauge returns to zero', async () => {
    const registry = new Registry();
    const srv = await serve(instrument(sse(10), { registry, route: '/events' }));
    const r = await get(srv.url);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_bytes_written_total', { route: '/events' })).toBe(r.body.length);
    expect(sum(samples, 'stream_writes_total', { route: '/events' })).toBe(10);
    expect(sum(samples, 'stream_started_total', { route: '/events', method: 'GET' })).toBe(1);
    expect(sum(samples, 'stream_duration_seconds_count', { outcome: 'completed' })).toBe(1);
    expect(sum(samples, 'stream_first_write_seconds_count')).toBe(1);
    expect(sum(samples, 'stream_active_connections')).toBe(0);
  });

  it('shows bytes of a long-lived stream while it is still running (scrape-time flush)', async () => {
    const registry = new Registry();
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
          res.write('{"a":1}\n');
          res.write('{"a":2}\n');
          await done;
          res.end();
        },
        { registry, route: '/long' },
      ),
    );
    const pending = get(srv.url);
    await until(async () => sum(await scrape(registry), 'stream_writes_total', { route: '/long' }) === 2, 'writes to show while open');
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_bytes_written_total', { route: '/long' })).toBe(16);
    expect(sum(samples, 'stream_active_connections', { route: '/long' })).toBe(1);
    expect(streams().filter((s) => s.route === '/long')).toHaveLength(1);
    release();
    await pending;
    const after = await scrape(registry);
    expect(sum(after, 'stream_bytes_written_total', { route: '/long' })).toBe(16);
    expect(sum(after, 'stream_active_connections', { route: '/long' })).toBe(0);
  });

  it('does not count short buffered responses as streams', async () => {
    const registry = new Registry();
    const srv = await serve(
      instrument(
        (req, res) => {
          if (req.url === '/json') {
            res.setHeader('Content-Type', 'application/json');
            res.end('{"ok":true}');
          } else {
            // written and ended in the same tick, with a length: a short response
            res.setHeader('Content-Length', '4');
            res.write('ab');
            res.end('cd');
          }
        },
        { registry },
      ),
    );
    for (let i = 0; i < 20; i++) {
      await get(srv.url + '/json');
      await get(srv.url + '/same-tick');
    }
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_started_total')).toBe(0);
    expect(sum(samples, 'stream_duration_seconds_count')).toBe(0);
  });

  it('counts a response as a stream by its content type, even before the first write', async () => {
    const registry = new Registry();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
          await gate;
          res.end('data: late\n\n');
        },
        { registry, route: '/wait' },
      ),
    );
    const pending = get(srv.url);
    await until(async () => sum(await scrape(registry), 'stream_active_connections', { route: '/wait' }) === 1, 'the stream to open');
    release();
    await pending;
    expect(sum(await scrape(registry), 'stream_started_total', { route: '/wait' })).toBe(1);
  });

  it('counts each response of a keep-alive connection that carries several streams', async () => {
    const registry = new Registry();
    const srv = await serve(instrument(sse(3), { registry, route: '/ka' }));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set<number>();
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = http.get(srv.url, { agent }, (res) => {
          ports.add(req.socket!.localPort!);
          res.resume();
          res.on('end', resolve);
        });
        req.on('error', reject);
      });
    }
    agent.destroy();
    expect(ports.size).toBe(1); // one socket carried all five
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_started_total', { route: '/ka' })).toBe(5);
    expect(sum(samples, 'stream_duration_seconds_count', { route: '/ka', outcome: 'completed' })).toBe(5);
  });

  it('applies prefix to every metric name', async () => {
    const registry = new Registry();
    const srv = await serve(instrument(sse(2), { registry, prefix: 'myapp_', route: '/p' }));
    await get(srv.url);
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
    for (const [name] of CONTRACT) expect(names).toContain('myapp_' + name);
    expect(names.filter((n) => !n.startsWith('myapp_'))).toEqual([]);
  });

  it('bounds the route label: values past maxRoutes become __other__', async () => {
    const registry = new Registry();
    const srv = await serve(instrument(sse(1, 0), { registry, maxRoutes: 5, route: (req) => req.url }));
    for (let i = 0; i < 12; i++) await get(`${srv.url}/r${i}`);
    const samples = await scrape(registry);
    const routes = new Set(samples.filter((s) => s.name === 'stream_started_total').map((s) => s.labels.route));
    expect(routes.size).toBe(6);
    expect(routes.has('__other__')).toBe(true);
    expect(sum(samples, 'stream_started_total', { route: '__other__' })).toBe(7);
    expect(sum(samples, 'stream_started_total')).toBe(12);
  });

  it('normalizes raw paths into low-cardinality routes when no route is given', async () => {
    const registry = new Registry();
    const srv = await serve(instrument(sse(1, 0), { registry }));
    await get(`${srv.url}/users/42/events?x=1`);
    await get(`${srv.url}/users/43/events`);
    await get(`${srv.url}/jobs/3f2b1c9a-1d2e-4f5a-8b9c-0d1e2f3a4b5c`);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_started_total', { route: '/users/:id/events' })).toBe(2);
    expect(sum(samples, 'stream_started_total', { route: '/jobs/:id' })).toBe(1);
  });

  it('keeps metrics of two registries apart and shares one set per registry', async () => {
    const a = new Registry();
    const b = new Registry();
    const srvA = await serve(instrument(sse(2), { registry: a, route: '/a' }));
    const srvB = await serve(instrument(sse(2), { registry: b, route: '/b' }));
    // a second instrument() on the same registry must not try to register the metrics again
    const srvA2 = await serve(instrument(sse(2), { registry: a, route: '/a2' }));
    await Promise.all([get(srvA.url), get(srvB.url), get(srvA2.url)]);
    const sa = await scrape(a);
    const sb = await scrape(b);
    expect(sum(sa, 'stream_started_total')).toBe(2);
    expect(sum(sb, 'stream_started_total')).toBe(1);
    expect(sum(sb, 'stream_started_total', { route: '/a' })).toBe(0);
  });

  it('rejects invalid options at setup with a stable code', () => {
    expect(() => instrument(() => undefined, { stallAfterMs: -1 })).toThrow(/stallAfterMs/);
    try {
      instrument(() => undefined, { prefix: '9bad' });
      expect.unreachable();
    } catch (err) {
      expect((err as { code: string }).code).toBe('STREAMSCOPE_ERR_INVALID_OPTION');
    }
  });

  it('rejects a bad bufferedAfterMs or writeGaps at setup with STREAMSCOPE_ERR_INVALID_OPTION', () => {
    for (const bad of [{ bufferedAfterMs: 0 }, { bufferedAfterMs: Number.NaN }, { writeGaps: 'yes' as unknown as boolean }]) {
      try {
        instrument(() => undefined, bad);
        expect.unreachable();
      } catch (err) {
        expect((err as { code: string }).code).toBe('STREAMSCOPE_ERR_INVALID_OPTION');
        expect((err as Error).message).toMatch(/bufferedAfterMs|writeGaps/);
      }
    }
  });

  it('starts the known label values of a route at 0, so rates work from the first scrape', async () => {
    const registry = new Registry();
    const srv = await serve(instrument(sse(1, 0), { registry, route: '/z' }));
    await get(srv.url);
    const samples = await scrape(registry);
    const values = (name: string, label: string): Record<string, number> =>
      Object.fromEntries(samples.filter((s) => s.name === name && s.labels.route === '/z').map((s) => [s.labels[label], s.value]));
    expect(values('stream_leaks_total', 'kind')).toEqual({ stalled_write: 0, dangling_stream: 0, zombie_producer: 0, dangling_async: 0, buffered_stream: 0 });
    // resume and rejection series exist only on routes that use them (test/series.test.ts)
    expect(values('stream_resumes_total', 'result')).toEqual({});
    expect(values('stream_rejected_total', 'reason')).toEqual({});
    expect(sum(samples, 'write_blocked_total', { route: '/z' })).toBe(0);
    expect(samples.some((s) => s.name === 'write_blocked_total' && s.labels.route === '/z')).toBe(true);
    const components = samples.filter((s) => s.name === 'streamscope_internal_errors_total').map((s) => s.labels.component);
    expect(components).toEqual(expect.arrayContaining(['tracker', 'metrics', 'tracing', 'detectors', 'sse', 'hub', 'agent']));
  });
});
