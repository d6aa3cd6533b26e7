import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, spawnNode, type Child } from './helpers/child.js';
import { installApp } from './helpers/tarball.js';
import { get, getAndAbort, until } from './helpers/http.js';

/**
 * What a user installs: the packed tarball beside the real @opentelemetry/sdk-metrics, and an app
 * (examples/otel-metrics) that registers its own MeterProvider. The numbers are read the way the app's
 * exporter gives them (the example's in-memory exporter, answered on /otel-metrics) and checked against what
 * the HTTP clients saw: completed streams and one client abort.
 */
const EXAMPLE = join(ROOT, 'examples/otel-metrics/server.mjs');
const COMPLETED = 3;
const TICKS = 5;

interface Point {
  attributes: Record<string, string>;
  value: number | { count: number; sum: number };
}
interface Exported {
  name: string;
  unit: string;
  points: Point[];
}

const total = (ms: Exported[], name: string, match: Record<string, string> = {}): number =>
  (ms.find((m) => m.name === name)?.points ?? [])
    .filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))
    .reduce((a, p) => a + (typeof p.value === 'number' ? p.value : p.value.count), 0);

describe('examples/otel-metrics: an app with its own MeterProvider, streamscope from the packed tarball', () => {
  let app = '';
  let child: Child | undefined;

  beforeAll(async () => {
    app = (await installApp({ '@opentelemetry/api': '^1.9.0', '@opentelemetry/sdk-metrics': '2.12.0', 'prom-client': '15.1.3' }, 'module')).dir;
    copyFileSync(EXAMPLE, join(app, 'server.mjs'));
    child = await spawnNode(['server.mjs'], { OTEL_EXAMPLE_EXPORTER: 'memory', STREAMSCOPE_AGENT: 'off' }, app);
  }, 300_000);
  afterAll(async () => {
    await child?.stop();
    if (app !== '') rmSync(app, { recursive: true, force: true });
  });

  it('the OTel instruments count the streams, outcomes, bytes and writes the clients saw', async () => {
    expect(existsSync(join(app, 'node_modules/streamscope/dist'))).toBe(true);
    expect(child!.hello.exporter).toBe('memory');
    const base = `http://127.0.0.1:${child!.hello.port as number}`;
    let bytes = 0;
    for (let i = 0; i < COMPLETED; i++) {
      const r = await get(`${base}/ticks?n=${TICKS}`);
      expect(r.status).toBe(200);
      expect(r.body.toString()).toContain(`data: tick ${TICKS - 1}\n\n`);
      bytes += r.body.length;
    }
    // one client leaves after the first tick; the next one is a minute away, so nothing else was written
    const first = 'data: tick 0\n\n';
    const got = await getAndAbort(`${base}/ticks?n=${TICKS}&every=60000`, first.length);
    expect(got).toBe(first.length);
    bytes += got;

    // the duration is recorded when the server side closes, which may trail the client's last byte
    const ms = (await until(async (): Promise<Exported[] | false> => {
      const m = JSON.parse((await get(`${base}/otel-metrics`)).body.toString()) as Exported[];
      return total(m, 'stream_duration_seconds', { route: '/ticks' }) === COMPLETED + 1 && m;
    }, 'every stream closed in the OTel export', 30_000)) as Exported[];

    expect(total(ms, 'stream_started_total', { route: '/ticks', method: 'GET' })).toBe(COMPLETED + 1);
    expect(total(ms, 'stream_duration_seconds', { route: '/ticks', method: 'GET', outcome: 'completed' })).toBe(COMPLETED);
    expect(total(ms, 'stream_duration_seconds', { route: '/ticks', method: 'GET', outcome: 'client_aborted' })).toBe(1);
    expect(total(ms, 'stream_bytes_written_total', { route: '/ticks' })).toBe(bytes);
    expect(total(ms, 'stream_writes_total', { route: '/ticks' })).toBe(COMPLETED * TICKS + 1);
    expect(total(ms, 'stream_active_connections', { route: '/ticks' })).toBe(0);
    expect(total(ms, 'stream_first_write_seconds', { route: '/ticks' })).toBe(COMPLETED + 1);
    // the producer stopped on close: no write after it
    expect(total(ms, 'stream_writes_after_close_total', { route: '/ticks' })).toBe(0);
    expect(ms.find((m) => m.name === 'stream_duration_seconds')?.unit).toBe('s');
    expect(ms.find((m) => m.name === 'stream_bytes_written_total')?.unit).toBe('By');
  }, 60_000);
});
