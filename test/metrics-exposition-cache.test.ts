import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { metricsHandler } from '../src/index.js';
import { foldBegin, foldEnd, getMetricsSet, OTHER_ROUTE, type MetricsSet, type RouteMetrics } from '../src/consumers/metrics.js';
import { expositionStats } from '../src/consumers/exposition.js';
import { PRERENDER_DELAY_MS, PRERENDER_SLICE_CHILDREN, prerenderStats } from '../src/consumers/prerender.js';
import { getTracker } from '../src/core/tracker.js';
import { served } from './helpers/metrics-served.js';
import { parseExposition, sum, until } from './helpers/http.js';

/**
 * metricsHandler() serves cached bytes for whatever did not change since its last scrape (src/consumers/exposition.ts:
 * per histogram child, per counter or gauge family, the pre-render's output): every value changed between two
 * scrapes must show in the next one, for every kind of family, and the text stays registry.metrics()'s byte for byte.
 */

const OPENMETRICS = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/** A registry with two routes and every family populated, its handler, and one scrape already served (caches full). */
async function scraped(om: boolean): Promise<{ registry: Registry; set: MetricsSet; a: RouteMetrics; b: RouteMetrics; scrape: () => Promise<string> }> {
  const registry = new Registry();
  if (om) (registry as unknown as { setContentType(t: string): void }).setContentType(OPENMETRICS);
  const set = getMetricsSet(registry, '', 3);
  const a = set.route('/a');
  const b = set.route('/b');
  for (const rm of [a, b]) {
    rm.started('GET');
    rm.duration('GET', 'completed').observe(0.2);
    rm.firstWrite.observe(0.01);
    rm.writeGap().observe(0.02);
    rm.leak('zombie_producer').inc();
    rm.resume('replayed').inc();
    rm.rejected('overloaded').inc();
    rm.guardAction('maxBufferedBytes').inc();
    rm.totals.bytes += 10;
    rm.active = 1;
  }
  const handler = metricsHandler(registry);
  const scrape = async (): Promise<string> => {
    const body = await served(handler);
    expect(body).toBe(await registry.metrics());
    return body;
  };
  await scrape();
  await scrape();
  return { registry, set, a, b, scrape };
}

const value = (body: string, name: string, labels: Record<string, string>): number => sum(parseExposition(body).samples, name, labels);

describe('metricsHandler(): a cached family never goes stale', () => {
  for (const om of [false, true]) {
    const fmt = om ? 'OpenMetrics' : 'text';
    it(`counters (per route, per method, per kind, per result, reason, guard, component) show every change (${fmt})`, async () => {
      const { a, scrape } = await scraped(om);
      const total = '_total'; // the samples' name in both formats
      a.totals.bytes += 5;
      a.started('GET');
      a.started('POST');
      a.leak('zombie_producer').inc(2);
      a.leak('stalled_write').inc();
      a.resume('expired').inc();
      a.rejected('overloaded').inc(3);
      a.guardAction('maxBufferedBytes').inc();
      getTracker().fault('hub', new Error('counted'));
      const body = await scrape();
      expect(value(body, `stream_bytes_written${total}`, { route: '/a' })).toBe(15);
      expect(value(body, `stream_bytes_written${total}`, { route: '/b' })).toBe(10);
      expect(value(body, `stream_started${total}`, { route: '/a', method: 'GET' })).toBe(2);
      expect(value(body, `stream_started${total}`, { route: '/a', method: 'POST' })).toBe(1);
      expect(value(body, `stream_leaks${total}`, { route: '/a', kind: 'zombie_producer' })).toBe(3);
      expect(value(body, `stream_leaks${total}`, { route: '/a', kind: 'stalled_write' })).toBe(1);
      expect(value(body, `stream_leaks${total}`, { route: '/b', kind: 'zombie_producer' })).toBe(1);
      expect(value(body, `stream_resumes${total}`, { route: '/a', result: 'expired' })).toBe(1);
      expect(value(body, `stream_rejected${total}`, { route: '/a', reason: 'overloaded' })).toBe(4);
      expect(value(body, `stream_guard_actions${total}`, { route: '/a', guard: 'maxBufferedBytes' })).toBe(2);
      expect(value(body, `streamscope_internal_errors${total}`, { component: 'hub' })).toBeGreaterThan(0);
    });

    it(`gauges (active, and the fold's buffered and stalled) show every change, up and down (${fmt})`, async () => {
      const { a, b, scrape } = await scraped(om);
      a.active = 7;
      const gen = foldBegin();
      foldEnd(gen);
      a.doneGen = gen;
      a.buffered = 4096;
      a.stalled = 2;
      let body = await scrape();
      expect(value(body, 'stream_active_connections', { route: '/a' })).toBe(7);
      expect(value(body, 'stream_active_connections', { route: '/b' })).toBe(1);
      expect(value(body, 'stream_buffered_bytes', { route: '/a' })).toBe(4096);
      expect(value(body, 'stream_stalled', { route: '/a' })).toBe(2);
      a.active = 1;
      b.active = 0;
      a.buffered = 0;
      body = await scrape();
      expect(value(body, 'stream_active_connections', { route: '/a' })).toBe(1);
      expect(value(body, 'stream_active_connections', { route: '/b' })).toBe(0);
      expect(value(body, 'stream_buffered_bytes', { route: '/a' })).toBe(0);
    });

    it(`histograms (per route; per method and outcome) show every observation (${fmt})`, async () => {
      const { a, scrape } = await scraped(om);
      a.duration('GET', 'completed').observe(3);
      a.duration('GET', 'timeout').observe(7);
      a.firstWrite.observe(0.2);
      a.writeGap().observe(0.5);
      const body = await scrape();
      expect(value(body, 'stream_duration_seconds_count', { route: '/a', method: 'GET', outcome: 'completed' })).toBe(2);
      expect(value(body, 'stream_duration_seconds_sum', { route: '/a', method: 'GET', outcome: 'completed' })).toBeCloseTo(3.2);
      expect(value(body, 'stream_duration_seconds_bucket', { route: '/a', method: 'GET', outcome: 'timeout', le: '10' })).toBe(1);
      expect(value(body, 'stream_duration_seconds_count', { route: '/b', method: 'GET', outcome: 'completed' })).toBe(1);
      expect(value(body, 'stream_first_write_seconds_count', { route: '/a' })).toBe(2);
      expect(value(body, 'stream_first_write_seconds_bucket', { route: '/a', le: '0.25' })).toBe(2);
      expect(value(body, 'stream_write_gap_seconds_count', { route: '/a' })).toBe(2);
    });

    it(`after registry.resetMetrics() every family shows its reset values, then the values after it (${fmt})`, async () => {
      const { registry, a, scrape } = await scraped(om);
      const total = '_total'; // the samples' name in both formats
      registry.resetMetrics();
      let body = await scrape();
      expect(value(body, 'stream_duration_seconds_count', { route: '/a', method: 'GET', outcome: 'completed' })).toBe(0);
      expect(value(body, `stream_leaks${total}`, { route: '/a', kind: 'zombie_producer' })).toBe(0);
      a.leak('zombie_producer').inc();
      a.totals.bytes += 1;
      a.firstWrite.observe(0.01);
      body = await scrape();
      expect(value(body, `stream_leaks${total}`, { route: '/a', kind: 'zombie_producer' })).toBe(1);
      expect(value(body, `stream_bytes_written${total}`, { route: '/a' })).toBe(1);
      expect(value(body, 'stream_first_write_seconds_count', { route: '/a' })).toBe(1);
    });

    it(`a route past maxRoutes shows under ${OTHER_ROUTE} from the next scrape (${fmt})`, async () => {
      const { set, scrape } = await scraped(om);
      const total = '_total'; // the samples' name in both formats
      set.route('/c').totals.bytes += 3;
      const other = set.route('/d');
      expect(other.route).toBe(OTHER_ROUTE);
      other.totals.bytes += 4;
      other.leak('dangling_stream').inc();
      other.duration('GET', 'error').observe(1);
      let body = await scrape();
      expect(value(body, `stream_bytes_written${total}`, { route: '/c' })).toBe(3);
      expect(value(body, `stream_bytes_written${total}`, { route: OTHER_ROUTE })).toBe(4);
      expect(value(body, `stream_leaks${total}`, { route: OTHER_ROUTE, kind: 'dangling_stream' })).toBe(1);
      expect(value(body, 'stream_duration_seconds_count', { route: OTHER_ROUTE, method: 'GET', outcome: 'error' })).toBe(1);
      set.route('/e').totals.bytes += 6;
      body = await scrape();
      expect(value(body, `stream_bytes_written${total}`, { route: OTHER_ROUTE })).toBe(10);
    });
  }

  it('default labels set between two scrapes show in the next (the cache is per default labels and content type)', async () => {
    const { registry, scrape } = await scraped(false);
    registry.setDefaultLabels({ zone: 'eu' });
    const body = await scrape();
    expect(body).toContain('stream_bytes_written_total{route="/a",zone="eu"} 10\n');
    expect(body).toContain('stream_duration_seconds_count{route="/a",method="GET",outcome="completed",zone="eu"} 1\n');
  });
});

describe('metricsHandler(): the first scrape\'s work is done before it', () => {
  it('pre-renders a registry after its handler is made and after new routes appear: the scrape then renders nothing', async () => {
    const registry = new Registry();
    const set = getMetricsSet(registry, '', 300);
    for (let k = 0; k < 50; k++) {
      const rm = set.route(`/r${k}`);
      rm.duration('GET', 'completed').observe(k);
      rm.firstWrite.observe(0.01);
      rm.leak('zombie_producer').inc();
    }
    const runs = prerenderStats.runs;
    const handler = metricsHandler(registry);
    await until(() => prerenderStats.runs > runs && prerenderStats.pending === 0, 'the pre-render');
    let rendered = expositionStats.rendered;
    expect(await served(handler)).toBe(await registry.metrics());
    expect(expositionStats.rendered - rendered).toBe(0);

    // a route made after the first scrape: pre-rendered again, a while later
    const rm = set.route('/late');
    rm.duration('POST', 'error').observe(2);
    const runs2 = prerenderStats.runs;
    await new Promise((r) => setTimeout(r, PRERENDER_DELAY_MS));
    await until(() => prerenderStats.runs > runs2 && prerenderStats.pending === 0, 'the pre-render of the new route');
    rendered = expositionStats.rendered;
    const body = await served(handler);
    expect(body).toBe(await registry.metrics());
    expect(body).toContain('stream_duration_seconds_count{route="/late",method="POST",outcome="error"} 1\n');
    expect(expositionStats.rendered - rendered).toBe(0);
  });

  it('pre-renders in slices: no turn of the loop renders more than PRERENDER_SLICE_CHILDREN histogram children', async () => {
    const registry = new Registry();
    const set = getMetricsSet(registry, '', 400);
    for (let k = 0; k < 300; k++) {
      const rm = set.route(`/r${k}`);
      for (const o of ['completed', 'client_aborted', 'error', 'timeout']) rm.duration('GET', o).observe(k);
      rm.writeGap().observe(0.1);
    }
    const runs = prerenderStats.runs;
    const before = prerenderStats.children;
    metricsHandler(registry);
    // a turn counter: every immediate is a new turn; the most children any one turn rendered
    let most = 0;
    let last = prerenderStats.children;
    let spinning = true;
    const spin = (): void => {
      most = Math.max(most, prerenderStats.children - last);
      last = prerenderStats.children;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    await until(() => prerenderStats.runs > runs && prerenderStats.pending === 0, 'the pre-render');
    spinning = false;
    await new Promise((r) => setImmediate(r));
    // 300 routes x (4 durations, first write, first byte, longest gap, blocked, write gap) children in all
    expect(prerenderStats.children - before).toBeGreaterThanOrEqual(300 * 9);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(PRERENDER_SLICE_CHILDREN);
  });
});
