import { afterAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import { spawnNode, type Child } from './helpers/child.js';
import { installApp, type App } from './helpers/tarball.js';

/**
 * metricsHandler() renders streamscope's series itself (docs/metrics.md, "Scrape cost"). In an app on each client
 * streamscope supports, installed with the packed tarball, its text must be what the client's own
 * `register.metrics()` gives, byte for byte: real streams (completed, aborted by the client, still open) on routes
 * whose names the clients escape differently, default labels (one shadowed by a series label), the app's own
 * metric, and OpenMetrics where the client has it; and the client's metrics() must not have been called.
 */

const APP = `'use strict';
const http = require('node:http');
const client = require(process.env.CLIENT);
const { instrument, metricsHandler } = require('streamscope');
const register = client.register;
const routes = ['/plain', '/q"uote', '/back\\\\slash\\\\n', '/new\\nline'];
const held = [];
const handlers = routes.map((route) => instrument((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  res.write('data: a\\n\\n');
  if (req.url.includes('end')) res.end('data: bye\\n\\n');
  else held.push(res);
}, { route }));
const hits = new client.Counter({ name: 'app_hits_total', help: 'hits "of" the app\\\\', labelNames: ['k'] });
const server = http.createServer((req, res) => {
  const k = Number(new URL(req.url, 'http://x').searchParams.get('k'));
  hits.inc({ k: String(k) });
  handlers[k](req, res);
});
const get = (port, path, abort) => new Promise((resolve, reject) => {
  const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
    res.once('data', () => { if (abort) { req.destroy(); resolve(); } });
    res.on('end', resolve);
    res.resume();
  });
  req.on('error', (e) => (abort ? resolve() : reject(e)));
});
async function compare(mode) {
  const proto = Object.getPrototypeOf(register);
  const own = proto.metrics;
  let calls = 0;
  proto.metrics = function (...a) { calls++; return own.apply(this, a); };
  let body = '';
  const res = { setHeader() {}, end(b) { body = String(b); } };
  try {
    await metricsHandler()({}, res);
  } finally {
    proto.metrics = own;
  }
  const theirs = await register.metrics();
  return { mode, identical: body === theirs, calls, lines: body.split('\\n').length, sample: body === theirs ? '' : body.slice(0, 300) + ' VS ' + theirs.slice(0, 300) };
}
server.listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  for (let k = 0; k < routes.length; k++) {
    await get(port, '/s?k=' + k + '&end=1');
    await get(port, '/s?k=' + k, true);
    get(port, '/s?k=' + k).catch(() => {});
  }
  // the aborted ones close, the held ones open
  await new Promise((r) => setTimeout(r, 400));
  for (const res of held) if (!res.writableEnded) res.write('data: more\\n\\n');
  const results = [await compare('text')];
  register.setDefaultLabels({ app: 'a"b\\\\c\\nd', route: 'shadowed' });
  results.push(await compare('text, default labels'));
  if (typeof register.setContentType === 'function') {
    register.setContentType(client.openMetricsContentType ?? client.Registry.OPENMETRICS_CONTENT_TYPE);
    results.push(await compare('OpenMetrics, default labels'));
  }
  console.log(JSON.stringify({ version: require(process.env.CLIENT + '/package.json').version, results }));
});
`;

const cases: Array<[string, string, string]> = [
  ['prom-client', '14.2.0', '14.'],
  ['prom-client', '15', '15.'],
  ['@prometheus-io/client', '>=0.16.0 <1.0.0', '0.'],
];

const apps: App[] = [];
const children: Child[] = [];
afterAll(async () => {
  await Promise.all(children.map((c) => c.stop()));
  await Promise.all(apps.map((a) => rm(a.dir, { recursive: true, force: true })));
}, 120_000);

describe('metricsHandler() gives each client’s own text (packed tarball)', () => {
  for (const [name, range, major] of cases) {
    it(`${name} ${range}`, async () => {
      const a = await installApp({ [name]: range });
      apps.push(a);
      a.file('server.cjs', APP);
      const c = await spawnNode(['server.cjs'], { CLIENT: name, STREAMSCOPE_AGENT: 'off' }, a.dir);
      children.push(c);
      const hello = c.hello as { version: string; results: Array<{ mode: string; identical: boolean; calls: number; lines: number; sample: string }> };
      expect(hello.version.startsWith(major)).toBe(true);
      expect(hello.results.length).toBeGreaterThanOrEqual(name === 'prom-client' && major === '14.' ? 2 : 3);
      for (const r of hello.results) {
        expect({ mode: r.mode, identical: r.identical, calls: r.calls, sample: r.sample }).toEqual({ mode: r.mode, identical: true, calls: 0, sample: '' });
        // every route's series are there (4 routes, each with its histograms and counters)
        expect(r.lines).toBeGreaterThan(300);
      }
    }, 400_000);
  }
});
