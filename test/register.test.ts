import { afterEach, describe, expect, it } from 'vitest';
import { get, parseExposition, sum, until } from './helpers/http.js';
import { freePort, spawnNode, type Child } from './helpers/child.js';

const children: Child[] = [];
afterEach(async () => {
  while (children.length) await children.pop()!.stop();
});

async function scrapeText(port: number): Promise<string> {
  return (await get(`http://127.0.0.1:${port}/metrics`)).body.toString();
}

describe('zero-code start: streamscope/register', () => {
  for (const [flag, app] of [
    ['--import', 'test/fixtures/plain-app.mjs'],
    ['--require', 'test/fixtures/plain-app.cjs'],
  ] as const) {
    it(`node ${flag} streamscope/register observes every response and serves /metrics on STREAMSCOPE_METRICS_PORT`, async () => {
      const metricsPort = await freePort();
      const child = await spawnNode([flag, 'streamscope/register', app], { STREAMSCOPE_METRICS_PORT: String(metricsPort), STREAMSCOPE_METRICS_HOST: '127.0.0.1' });
      children.push(child);
      const port = child.hello.port as number;
      for (let i = 0; i < 4; i++) await get(`http://127.0.0.1:${port}/events/${i}`);
      for (let i = 0; i < 4; i++) await get(`http://127.0.0.1:${port}/json`);
      await until(async () => sum(parseExposition(await scrapeText(metricsPort)).samples, 'stream_duration_seconds_count') === 4, 'four streams', 10_000).catch(() => undefined);
      const samples = parseExposition(await scrapeText(metricsPort)).samples;
      expect(sum(samples, 'stream_started_total')).toBe(4); // the JSON responses are not streams
      expect(sum(samples, 'stream_duration_seconds_count', { outcome: 'completed' })).toBe(4);
      expect(sum(samples, 'stream_writes_total')).toBe(12);
      // raw paths are folded into one low-cardinality route
      expect(sum(samples, 'stream_started_total', { route: '/events/:id' })).toBe(4);
      // the /metrics responses themselves are not observed
      expect(sum(samples, 'stream_started_total', { route: '/metrics' })).toBe(0);
    });
  }

  it('loading the register entry twice (import and require) observes once', async () => {
    const metricsPort = await freePort();
    const child = await spawnNode(['--import', 'streamscope/register', '--require', 'streamscope/register', 'test/fixtures/plain-app.mjs'], {
      STREAMSCOPE_METRICS_PORT: String(metricsPort),
      STREAMSCOPE_METRICS_HOST: '127.0.0.1',
    });
    children.push(child);
    const port = child.hello.port as number;
    for (let i = 0; i < 3; i++) await get(`http://127.0.0.1:${port}/s`);
    await until(async () => sum(parseExposition(await scrapeText(metricsPort)).samples, 'stream_duration_seconds_count') >= 3, 'streams to close');
    const samples = parseExposition(await scrapeText(metricsPort)).samples;
    expect(sum(samples, 'stream_started_total')).toBe(3);
    expect(sum(samples, 'stream_writes_total')).toBe(9);
    expect(child.stderr()).not.toMatch(/cannot serve/);
  });

  it('a bad STREAMSCOPE_METRICS_PORT is one clear line, and the app still runs', async () => {
    const child = await spawnNode(['--import', 'streamscope/register', 'test/fixtures/plain-app.mjs'], { STREAMSCOPE_METRICS_PORT: 'ninety' });
    children.push(child);
    const r = await get(`http://127.0.0.1:${child.hello.port as number}/json`);
    expect(r.status).toBe(200);
    expect(child.stderr()).toMatch(/STREAMSCOPE_METRICS_PORT must be a port number, got "ninety"/);
  });
});
