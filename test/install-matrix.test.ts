import { afterAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnNode, type Child } from './helpers/child.js';
import { installApp, type App } from './helpers/tarball.js';
import { get, parseExposition, sum, until, type Sample } from './helpers/http.js';

/**
 * What users run today, installed beside the packed tarball in a fresh app folder without
 * --legacy-peer-deps (a peer conflict fails `npm install`, and so the test): the current OpenTelemetry SDK
 * (0.3xx, Node >= 22.15), the 0.2xx SDK (Node 20), prom-client's successor `@prometheus-io/client` (Node 22+),
 * and streamscope alone. Each app counts a stream in its own client's /metrics and exports its span through
 * its own SDK to a real OTLP/HTTP receiver. prom-client 14 and 15 alone: test/app-prom-client.test.ts.
 */

const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
const node22 = major >= 22;
const node2215 = major > 22 || (major === 22 && minor >= 15);

/** The app: serves its own client's global register on /metrics and an SSE route; OTEL=app starts the SDK itself. */
const APP = `'use strict';
const http = require('node:http');
if (process.env.OTEL === 'app') {
  const { NodeSDK } = require('@opentelemetry/sdk-node');
  new NodeSDK().start();
}
const client = require(process.env.CLIENT);
const registered = process.execArgv.some((a) => a.includes('streamscope/register'));
const { instrument, metricsHandler } = require('streamscope');
const wrap = registered ? (h) => h : (h) => instrument(h, { route: '/ticks' });
const ticks = wrap((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  let n = 0;
  const timer = setInterval(() => {
    res.write('data: tick ' + n + '\\n\\n');
    if (++n === 5) { clearInterval(timer); res.end(); }
  }, 10);
  req.on('close', () => clearInterval(timer));
});
const serveOwn = (req, res) => client.register.metrics().then((body) => {
  res.setHeader('Content-Type', client.register.contentType);
  res.end(body);
}, (err) => { res.statusCode = 500; res.end(String(err)); });
const server = http.createServer((req, res) => {
  const path = (req.url || '').split('?')[0];
  if (path === '/metrics') serveOwn(req, res);
  else if (path === '/streamscope-metrics') metricsHandler()(req, res);
  else if (path === '/ticks') ticks(req, res);
  else { res.statusCode = 404; res.end(); }
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port, registered }));
});
`;

/** A real OTLP/HTTP (JSON) receiver: the span names that arrived. */
async function otlpReceiver(): Promise<{ url: string; spans: string[]; close(): Promise<void> }> {
  const spans: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as {
          resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: Array<{ name: string }> }> }>;
        };
        for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push(s.name);
      }
      res.setHeader('Content-Type', 'application/json');
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, spans, close: () => new Promise((r) => server.close(() => r())) };
}

const children: Child[] = [];
const apps: App[] = [];
afterAll(async () => {
  await Promise.all(children.map((c) => c.stop()));
  await Promise.all(apps.map((a) => rm(a.dir, { recursive: true, force: true })));
}, 300_000);

async function app(deps: Record<string, string>): Promise<App> {
  const a = await installApp(deps);
  apps.push(a);
  a.file('server.cjs', APP);
  return a;
}

async function start(a: App, args: string[], env: Record<string, string>): Promise<Child> {
  const c = await spawnNode(args, { STREAMSCOPE_AGENT: 'off', ...env }, a.dir);
  children.push(c);
  return c;
}

/** Serves `streams` SSE streams; returns the app's own /metrics once every stream is counted there. */
async function exercise(c: Child, streams: number, path = '/metrics'): Promise<Sample[]> {
  const base = `http://127.0.0.1:${c.hello.port as number}`;
  for (let i = 0; i < streams; i++) {
    const r = await get(`${base}/ticks`);
    expect(r.body.toString()).toContain('data: tick 4\n\n');
  }
  return (await until(async (): Promise<Sample[] | false> => {
    const s = parseExposition((await get(`${base}${path}`)).body.toString()).samples;
    return sum(s, 'stream_duration_seconds_count', { route: '/ticks' }) === streams && s;
  }, `every stream counted on ${path}`)) as Sample[];
}

function version(a: App, name: string): string {
  return (JSON.parse(readFileSync(join(a.dir, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

/** One copy of the OpenTelemetry API in the app (a peer): streamscope has none of its own. */
function oneApiCopy(a: App): void {
  expect(existsSync(join(a.dir, 'node_modules/@opentelemetry/api'))).toBe(true);
  expect(existsSync(join(a.dir, 'node_modules/streamscope/node_modules/@opentelemetry/api'))).toBe(false);
}

const otelEnv = (url: string): Record<string, string> => ({
  OTEL_EXPORTER_OTLP_ENDPOINT: url,
  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
  OTEL_TRACES_EXPORTER: 'otlp',
  OTEL_METRICS_EXPORTER: 'none',
  OTEL_LOGS_EXPORTER: 'none',
  OTEL_BSP_SCHEDULE_DELAY: '100',
});

async function otelCase(sdkRange: string, promVersion: string, expectMajor: string): Promise<void> {
  const a = await app({ 'prom-client': promVersion, '@opentelemetry/sdk-node': sdkRange });
  expect(version(a, '@opentelemetry/sdk-node')).toMatch(new RegExp(`^0\\.${expectMajor}`));
  oneApiCopy(a);
  const rx = await otlpReceiver();
  try {
    // the app starts the SDK itself; then streamscope/register starts it when the app has none
    for (const [args, otel] of [
      [['server.cjs'], 'app'],
      [['--require', 'streamscope/register', 'server.cjs'], 'register'],
    ] as const) {
      const before = rx.spans.length;
      const c = await start(a, [...args], { CLIENT: 'prom-client', OTEL: otel, ...otelEnv(rx.url) });
      const samples = await exercise(c, 2);
      expect(sum(samples, 'stream_started_total', { route: '/ticks' })).toBe(2);
      await until(() => rx.spans.slice(before).filter((n) => n === 'stream /ticks').length === 2, `two stream spans exported (${otel})`);
      await c.stop();
    }
  } finally {
    await rx.close();
  }
}

describe('installs beside what users run today (packed tarball, no --legacy-peer-deps)', () => {
  it.runIf(node2215)('the current OpenTelemetry SDK (sdk-node 0.3xx) with prom-client 15: metrics and spans', async () => {
    await otelCase('>=0.300.0 <0.400.0', '15', '3');
  }, 400_000);

  it('sdk-node 0.2xx with prom-client 14: metrics and spans', async () => {
    await otelCase('>=0.200.0 <0.300.0', '14.2.0', '2');
  }, 400_000);

  it('an app on the OpenTelemetry 2.x packages without the Node SDK (API pinned below 1.10) installs too', async () => {
    // npm resolves an optional peer's own peers even when the app does not install it: a declared
    // `@opentelemetry/sdk-node` range reaching 0.3xx (API 1.10 only) made this install fail on Node 22+.
    const a = await app({ '@opentelemetry/api': '>=1.9.0 <1.10.0', '@opentelemetry/sdk-trace-base': '2.12.0', 'prom-client': '15' });
    expect(version(a, '@opentelemetry/api')).toMatch(/^1\.9\./);
    expect(existsSync(join(a.dir, 'node_modules/@opentelemetry/sdk-node'))).toBe(false);
    oneApiCopy(a);
  }, 400_000);

  it.runIf(node22)('@prometheus-io/client: the stream series are in its global register', async () => {
    const a = await app({ '@prometheus-io/client': '>=0.16.0 <1.0.0' });
    expect(existsSync(join(a.dir, 'node_modules/prom-client'))).toBe(false);
    oneApiCopy(a);
    const samples = await exercise(await start(a, ['server.cjs'], { CLIENT: '@prometheus-io/client' }), 3);
    expect(sum(samples, 'stream_started_total', { route: '/ticks', method: 'GET' })).toBe(3);
    expect(sum(samples, 'stream_duration_seconds_count', { route: '/ticks', outcome: 'completed' })).toBe(3);
    expect(sum(samples, 'stream_active_connections', { route: '/ticks' })).toBe(0);
    // register mode and streamscope's own metricsHandler() serve the same register
    const r = await start(a, ['--require', 'streamscope/register', 'server.cjs'], { CLIENT: '@prometheus-io/client' });
    expect(r.hello.registered).toBe(true);
    await exercise(r, 2, '/streamscope-metrics');
  }, 400_000);

  it.runIf(node22)('both clients declared: @prometheus-io/client wins, STREAMSCOPE_PROM_CLIENT chooses', async () => {
    const a = await app({ '@prometheus-io/client': '>=0.16.0 <1.0.0', 'prom-client': '15' });
    // the successor's register has the series, prom-client's has none
    await exercise(await start(a, ['server.cjs'], { CLIENT: '@prometheus-io/client' }), 1);
    const other = await start(a, ['server.cjs'], { CLIENT: 'prom-client' });
    await get(`http://127.0.0.1:${other.hello.port as number}/ticks`);
    const text = (await get(`http://127.0.0.1:${other.hello.port as number}/metrics`)).body.toString();
    expect(text).not.toContain('stream_started_total');
    // the override
    await exercise(await start(a, ['server.cjs'], { CLIENT: 'prom-client', STREAMSCOPE_PROM_CLIENT: 'prom-client' }), 1);
  }, 400_000);

  it('streamscope alone: streams are served, metrics are off, and it says so once', async () => {
    const a = await app({});
    expect(existsSync(join(a.dir, 'node_modules/prom-client'))).toBe(false);
    expect(existsSync(join(a.dir, 'node_modules/@prometheus-io/client'))).toBe(false);
    oneApiCopy(a); // a required peer: npm installs it
    a.file(
      'alone.cjs',
      `const http = require('node:http');
const { instrument, streams, metricsHandler } = require('streamscope');
const routes = ['/a', '/b', '/c'].map((route) => instrument((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  res.write('data: 1\\n\\n');
  setTimeout(() => res.end('data: 2\\n\\n'), 20);
}, { route }));
let i = 0;
const server = http.createServer((req, res) => req.url === '/metrics' ? metricsHandler()(req, res) : routes[i++ % 3](req, res));
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port, tracked: typeof streams })));
`,
    );
    const c = await start(a, ['alone.cjs'], {});
    const base = `http://127.0.0.1:${c.hello.port as number}`;
    for (let k = 0; k < 6; k++) expect((await get(`${base}/x`)).body.toString()).toBe('data: 1\n\ndata: 2\n\n');
    const m = await get(`${base}/metrics`);
    expect(m.status).toBe(500);
    expect(m.body.toString()).toMatch(/no Prometheus client is installed/);
    await c.stop();
    const lines = c.stderr().split('\n').filter((l) => l.includes('no Prometheus client'));
    expect(lines).toHaveLength(1);
  }, 400_000);
});
