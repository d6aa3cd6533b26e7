import { afterEach, describe, expect, it, vi } from 'vitest';
import { Registry } from 'prom-client';
import { metricsHandler, shutdown } from '../src/index.js';
import { getMetricsSet, type RouteMetrics } from '../src/consumers/metrics.js';
import { expositionStats } from '../src/consumers/exposition.js';
import { prerenderStats, REFRESH_IDLE_MS, REFRESH_MIN_INTERVAL_MS } from '../src/consumers/prerender.js';
import { served } from './helpers/metrics-served.js';
import { parseExposition, sleep, sum, until } from './helpers/http.js';

/**
 * metricsHandler() learns a registry's scrape interval from its scrapes and renders what changed shortly before
 * the next scrape is due (src/consumers/prerender.ts, "the refresh"), so a scrape renders only what changed in
 * the last moments, never what every stream opened since the scrape before changed. Counted, never timed.
 */

function populated(routes: number): { registry: Registry; rms: RouteMetrics[] } {
  const registry = new Registry();
  const set = getMetricsSet(registry, '', routes + 10);
  const rms: RouteMetrics[] = [];
  for (let k = 0; k < routes; k++) {
    const rm = set.route(`/r${k}`);
    rm.started('GET');
    rm.duration('GET', 'completed').observe(1);
    rm.firstWrite.observe(0.01);
    rms.push(rm);
  }
  return { registry, rms };
}

/** What streams opening on every route change: started, active, first write and first byte. */
function open(rms: RouteMetrics[], perRoute: number): void {
  for (const rm of rms) {
    for (let i = 0; i < perRoute; i++) {
      rm.started('GET');
      rm.active++;
      rm.firstWrite.observe(0.002 * i);
      rm.firstByte.observe(0.002 * i);
    }
  }
}

// every test's registries stop refreshing (each test counts the refreshes of its own)
afterEach(async () => {
  vi.useRealTimers();
  await shutdown();
});

describe('metricsHandler(): what changes between two scrapes is rendered before the next one', () => {
  it('after streams open between scrapes at a regular interval, the next scrape renders none of what they changed', async () => {
    const routes = 40;
    const { registry, rms } = populated(routes);
    const runs = prerenderStats.runs;
    const handler = metricsHandler(registry);
    await until(() => prerenderStats.runs > runs && prerenderStats.pending === 0, 'the pre-render');
    // three scrapes a regular interval apart (not timed: only the gaps' lower bound matters, and it is a sleep)
    for (let i = 0; i < 3; i++) {
      if (i > 0) await sleep(REFRESH_MIN_INTERVAL_MS + 100);
      expect(await served(handler)).toBe(await registry.metrics());
    }
    const refreshes = prerenderStats.refreshes;
    const children = prerenderStats.children;
    const families = prerenderStats.families;
    // 25 streams open on every route right after the scrape
    open(rms, 25);
    // the refresh renders them before the next scrape is due: two histogram children per route, two families
    await until(
      () => prerenderStats.refreshes > refreshes && prerenderStats.children - children >= 2 * routes && prerenderStats.families - families >= 2,
      'the refresh before the next scrape',
    );
    const rendered = expositionStats.rendered;
    const body = await served(handler);
    expect(expositionStats.rendered - rendered).toBe(0);
    expect(body).toBe(await registry.metrics());
    const samples = parseExposition(body).samples;
    expect(sum(samples, 'stream_started_total', { route: '/r7', method: 'GET' })).toBe(26);
    expect(sum(samples, 'stream_active_connections', { route: '/r7' })).toBe(25);
    expect(sum(samples, 'stream_first_write_seconds_count', { route: '/r7' })).toBe(26);
    expect(sum(samples, 'stream_first_byte_seconds_count', { route: '/r7' })).toBe(25);

    // what changes after the refresh still shows in the scrape (rendered by it): the cache is never stale
    const refreshes2 = prerenderStats.refreshes;
    open(rms, 1);
    await until(() => prerenderStats.refreshes > refreshes2, 'the next refresh');
    rms[3]!.started('POST');
    rms[3]!.firstWrite.observe(0.5);
    const rendered2 = expositionStats.rendered;
    const body2 = await served(handler);
    expect(body2).toBe(await registry.metrics());
    expect(sum(parseExposition(body2).samples, 'stream_started_total', { route: '/r3', method: 'POST' })).toBe(1);
    expect(expositionStats.rendered - rendered2).toBeGreaterThanOrEqual(2);
    expect(expositionStats.rendered - rendered2).toBeLessThanOrEqual(2 + 1);
  });

  it('refreshes only while the registry is scraped: none before its scrapes, some between them, none once they stop', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'performance', 'Date'] });
    const { registry, rms } = populated(20);
    const handler = metricsHandler(registry);
    const refreshes = prerenderStats.refreshes;
    // never scraped: ten minutes of streams opening, the pre-render and nothing else
    for (let s = 0; s < 600; s++) {
      open(rms, 1);
      await vi.advanceTimersByTimeAsync(1000);
    }
    expect(prerenderStats.refreshes - refreshes).toBe(0);
    expect(prerenderStats.scheduled).toBe(0);

    // scraped every second for a minute: one refresh before each scrape (the first two scrapes teach the interval)
    for (let s = 0; s < 60; s++) {
      expect(await served(handler)).toBe(await registry.metrics());
      open(rms, 1);
      await vi.advanceTimersByTimeAsync(1000);
    }
    expect(prerenderStats.refreshes - refreshes).toBeGreaterThanOrEqual(58);
    expect(prerenderStats.refreshes - refreshes).toBeLessThanOrEqual(60);

    // the scrapes stop: the refresh goes on for REFRESH_IDLE_MS (a missed scrape or a scraper restarting), then stops
    const stopped = prerenderStats.refreshes;
    for (let s = 0; s < 600; s++) {
      open(rms, 1);
      await vi.advanceTimersByTimeAsync(1000);
    }
    expect(prerenderStats.refreshes - stopped).toBeLessThanOrEqual(REFRESH_IDLE_MS / 1000 + 1);
    expect(prerenderStats.scheduled).toBe(0);
  });

  it('scrapes back to back teach no interval; two REFRESH_MIN_INTERVAL_MS apart do; shutdown() leaves no refresh scheduled', async () => {
    const { registry } = populated(5);
    const handler = metricsHandler(registry);
    const scheduled = prerenderStats.scheduled;
    await served(handler);
    await served(handler);
    await served(handler);
    expect(prerenderStats.scheduled).toBe(scheduled);
    await sleep(REFRESH_MIN_INTERVAL_MS + 50);
    await served(handler);
    expect(prerenderStats.scheduled).toBe(scheduled + 1);
    await shutdown();
    expect(prerenderStats.scheduled).toBe(0);
  });
});
