import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

/**
 * Stacks are captured cheaply and formatted late (docs/detectors.md, "What trackAsync and captureStacks cost"):
 * in the built package, in a plain node process,
 * - a finding raised long after the creating function returned still names the user's `file:line`
 *   (dangling_async for a timer and for a socket; captureStacks for a stream);
 * - healthy traffic formats no stack at all, captures none for an Immediate or for Node's own keep-alive
 *   timer, and trackAsync registers no async_hooks `destroy` hook (which would make Node track every promise).
 */

const dist = resolve('dist/esm/index.js');
beforeAll(() => {
  if (!existsSync(dist)) throw new Error('dist/esm is missing: run `npm run build` first');
});
const cleanup: Array<() => void> = [];
afterEach(() => {
  while (cleanup.length) cleanup.pop()!();
});

/** Runs `lines` as main.mjs in a child process; returns its last stdout line, parsed. */
async function run(lines: string[], flags: string[] = []): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'streamscope-stacks-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'main.mjs');
  writeFileSync(file, lines.join('\n') + '\n');
  const { stdout } = await promisify(execFile)(process.execPath, [...flags, file], { timeout: 30_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

/** The 1-based line of `marker` in `lines` (where the script creates what the finding must name). */
const lineOf = (lines: string[], marker: string): number => lines.findIndex((l) => l.includes(marker)) + 1;

const head = [
  `import http from 'node:http';`,
  `import net from 'node:net';`,
  `import * as ss from ${JSON.stringify(dist)};`,
  `const found = [];`,
  `ss.onFinding((f) => found.push({ kind: f.kind, route: f.route, detail: f.detail, stack: f.stack }));`,
  `const get = (port, path) => new Promise((r) => http.get({ port, path, agent: false }, (res) => { res.resume(); res.on('end', r); }));`,
];

describe('a finding raised after a deferred capture names the user frame', () => {
  it('dangling_async: a timer and a socket created in helpers that returned long before are named by file:line', async () => {
    const lines = [
      ...head,
      `const peer = net.createServer((c) => c.on('error', () => {})).listen(0, '127.0.0.1');`,
      `await new Promise((r) => peer.on('listening', r));`,
      `const keep = [];`,
      `function startPoll() { keep.push(setInterval(() => {}, 1000)); } // POLL`,
      `function openUpstream() { const c = net.connect(peer.address().port, '127.0.0.1'); c.on('error', () => {}); keep.push(c); } // SOCKET`,
      `function tidyUpstream() { const c = net.connect(peer.address().port, '127.0.0.1'); c.on('error', () => {}); return new Promise((r) => c.on('connect', () => { c.destroy(); r(); })); }`,
      `const h = ss.instrument(async (req, res) => {`,
      `  res.writeHead(200, { 'Content-Type': 'text/event-stream' });`,
      `  await new Promise((r) => setImmediate(r));`,
      `  if (req.url === '/timer') startPoll();`,
      `  if (req.url === '/socket') { openUpstream(); await new Promise((r) => setTimeout(r, 20)); }`,
      `  if (req.url === '/tidy') await tidyUpstream();`,
      `  res.end('data: x\\n\\n');`,
      `}, { trackAsync: true, danglingAfterMs: 200, route: (req) => req.url });`,
      `const srv = http.createServer(h).listen(0, '127.0.0.1');`,
      `await new Promise((r) => srv.on('listening', r));`,
      `for (const p of ['/timer', '/socket', '/tidy']) await get(srv.address().port, p);`,
      `setTimeout(() => { console.log(JSON.stringify(found)); process.exit(0); }, 1500);`,
    ];
    const found = (await run(lines)) as Array<{ kind: string; route: string; detail: string; stack?: string }>;
    const timer = found.find((f) => f.route === '/timer' && f.kind === 'dangling_async');
    expect(timer?.detail).toMatch(/^1 Timeout created by the stream's handler/);
    expect(timer?.stack?.split('\n')[0]).toMatch(new RegExp(`startPoll .*main\\.mjs:${lineOf(lines, '// POLL')}:`));
    const socket = found.find((f) => f.route === '/socket' && f.kind === 'dangling_async');
    expect(socket?.detail).toMatch(/^1 TCPWRAP created by the stream's handler/);
    expect(socket?.stack?.split('\n')[0]).toMatch(new RegExp(`openUpstream .*main\\.mjs:${lineOf(lines, '// SOCKET')}:`));
    // the socket opened and closed, the Immediate and the keep-alive-less timers: nothing
    expect(found.filter((f) => f.route === '/tidy')).toEqual([]);
    expect(found.filter((f) => f.kind === 'dangling_async')).toHaveLength(2);
  });

  it('captureStacks: the stack of a finding raised after the handler moved on names the writeHead line', async () => {
    const lines = [
      ...head,
      `let release;`,
      `const forever = new Promise((r) => (release = r));`,
      `function openStream(res) { res.writeHead(200, { 'Content-Type': 'text/event-stream' }); } // HEAD`,
      `const h = ss.instrument(async (req, res) => {`,
      `  openStream(res);`,
      `  res.write('data: first\\n\\n');`,
      `  await forever;`,
      `}, { captureStacks: true, danglingAfterMs: 200, route: '/hang' });`,
      `const srv = http.createServer(h).listen(0, '127.0.0.1');`,
      `await new Promise((r) => srv.on('listening', r));`,
      `const req = http.get({ port: srv.address().port, agent: false }, (res) => res.once('data', () => req.destroy()));`,
      `req.on('error', () => {});`,
      `setTimeout(() => { console.log(JSON.stringify(found)); release(); process.exit(0); }, 1500);`,
    ];
    const found = (await run(lines)) as Array<{ kind: string; stack?: string }>;
    expect(found.map((f) => f.kind)).toEqual(['dangling_stream']);
    expect(found[0]!.stack?.split('\n')[0]).toMatch(new RegExp(`openStream .*main\\.mjs:${lineOf(lines, '// HEAD')}:`));
  });
});

describe('captureStacks keeps the user frames under framework dispatch, not streamscope’s', () => {
  // a handler reached through several layers of dispatch, whose head is written by a helper of its own or by
  // Node (flushHeaders → _implicitHeader → writeHead): each user frame is named by file:line, in order
  const req = `import { createRequire } from 'node:module'; const require = createRequire(${JSON.stringify(resolve('package.json'))});`;
  const hang = [
    `const held = [];`,
    `const client = (port, path) => { const r = http.get({ port, path, agent: false }, (res) => res.once('data', () => r.destroy())); r.on('error', () => {}); };`,
  ];
  // the first finding of the route (the producer writes on after the client left: a middleware cannot see its handler settle)
  const stackOf = (found: Array<{ route: string; kind: string; stack?: string }>, route: string): string[] =>
    (found.find((f) => String(f.route).endsWith(route))?.stack ?? '').split('\n');

  it('instrument(): three user frames, then one frame of streamscope (the wrapper), then nothing but Node', async () => {
    const lines = [
      ...head,
      ...hang,
      `function openStream(res) { res.writeHead(200, { 'Content-Type': 'text/event-stream' }); } // OPEN`,
      `function start(res) { openStream(res); res.write('data: 1\\n\\n'); } // START`,
      `async function handler(req, res) { start(res); await new Promise((r) => held.push(r)); } // HANDLER`,
      `const srv = http.createServer(ss.instrument(handler, { captureStacks: true, danglingAfterMs: 200, route: '/deep' })).listen(0, '127.0.0.1');`,
      `await new Promise((r) => srv.on('listening', r));`,
      `client(srv.address().port, '/');`,
      `setTimeout(() => { console.log(JSON.stringify(found)); process.exit(0); }, 1500);`,
    ];
    const stack = stackOf((await run(lines)) as never, '/deep');
    expect(stack[0]).toMatch(new RegExp(`openStream .*main\\.mjs:${lineOf(lines, '// OPEN')}:`));
    expect(stack[1]).toMatch(new RegExp(`start .*main\\.mjs:${lineOf(lines, '// START')}:`));
    expect(stack[2]).toMatch(new RegExp(`handler .*main\\.mjs:${lineOf(lines, '// HANDLER')}:`));
    // under the handler: the instrument() wrapper, then Node's dispatch (not shown); no pass-through frame of ours
    expect(stack.slice(3).filter((l) => l.includes('/dist/'))).toHaveLength(1);
    expect(stack).toHaveLength(4);
  });

  it('Express, a handler under nested routers that opens with flushHeaders(), and Fastify through reply.raw in a helper: the handler is named', async () => {
    const lines = [
      ...head,
      ...hang,
      req,
      `const express = require('express');`,
      `const fastify = require('fastify');`,
      `const { streamscope: expressStreamscope } = await import(${JSON.stringify(resolve('dist/esm/express.js'))});`,
      `const { streamscope: fastifyStreamscope } = await import(${JSON.stringify(resolve('dist/esm/fastify.js'))});`,
      `const opts = { captureStacks: true, danglingAfterMs: 200 };`,
      `const app = express();`,
      `app.use(expressStreamscope(opts));`,
      `const api = express.Router(); const v1 = express.Router();`,
      `app.use('/api', api); api.use('/v1', v1);`,
      `v1.get('/events', (req, res, next) => next(), async function events(req, res) {`,
      `  res.setHeader('Content-Type', 'text/event-stream');`,
      `  res.flushHeaders(); // FLUSH`,
      `  res.write('data: 1\\n\\n');`,
      `  held.push(setInterval(() => res.write('data: 2\\n\\n'), 50));`,
      `});`,
      `const e = http.createServer(app).listen(0, '127.0.0.1');`,
      `await new Promise((r) => e.on('listening', r));`,
      `client(e.address().port, '/api/v1/events');`,
      `const f = fastify();`,
      `await f.register(fastifyStreamscope, opts);`,
      `function head(reply) { reply.raw.writeHead(200, { 'Content-Type': 'text/event-stream' }); } // HEAD`,
      `f.get('/fastify', async function ticks(req, reply) { head(reply); reply.raw.write('data: 1\\n\\n'); held.push(setInterval(() => reply.raw.write('data: 2\\n\\n'), 50)); await new Promise(() => {}); }); // TICKS`,
      `await f.listen({ port: 0, host: '127.0.0.1' });`,
      `client(f.server.address().port, '/fastify');`,
      `setTimeout(() => { console.log(JSON.stringify(found)); process.exit(0); }, 2000);`,
    ];
    const found = (await run(lines)) as Array<{ route: string; kind: string; stack?: string }>;
    const ex = stackOf(found, '/api/v1/events');
    expect(ex[0]).toMatch(new RegExp(`events .*main\\.mjs:${lineOf(lines, '// FLUSH')}:`));
    const fa = stackOf(found, '/fastify');
    expect(fa[0]).toMatch(new RegExp(`head .*main\\.mjs:${lineOf(lines, '// HEAD')}:`));
    expect(fa[1]).toMatch(new RegExp(`ticks .*main\\.mjs:${lineOf(lines, '// TICKS')}:`));
  });
});

describe('healthy traffic pays for no formatting', () => {
  it('trackAsync + captureStacks over keep-alive: no stack formatted, one captured per stream and per Timeout, none for Immediates or Node’s keep-alive timer; no destroy hook', async () => {
    const lines = [
      `import { createRequire } from 'node:module';`,
      // counts what V8 is asked to capture and to format (Node calls Error.prepareStackTrace when one is set)
      `const counts = { captured: 0, formatted: 0 };`,
      `const capture = Error.captureStackTrace;`,
      `Error.captureStackTrace = function (o, f) { counts.captured++; return capture.call(this, o, f); };`,
      `Error.prepareStackTrace = (e, frames) => { counts.formatted++; return String(e) + frames.map((f) => '\\n    at ' + f).join(''); };`,
      ...head,
      `const h = ss.instrument(async (req, res) => {`,
      `  res.writeHead(200, { 'Content-Type': 'text/event-stream' });`,
      `  for (let i = 0; i < 3; i++) { res.write('data: ' + i + '\\n\\n'); await new Promise((r) => setImmediate(r)); }`,
      `  for (let i = 0; i < 2; i++) { res.write('data: ' + i + '\\n\\n'); await new Promise((r) => setTimeout(r, 2)); }`,
      `  res.end();`,
      `}, { trackAsync: true, captureStacks: true, danglingAfterMs: 200, route: '/clean' });`,
      `const srv = http.createServer(h).listen(0, '127.0.0.1');`,
      `await new Promise((r) => srv.on('listening', r));`,
      `const agent = new http.Agent({ keepAlive: true });`,
      `const before = counts.captured;`,
      `for (let i = 0; i < 20; i++) await new Promise((r) => http.get({ port: srv.address().port, agent }, (res) => { res.resume(); res.on('end', r); }));`,
      `const captured = counts.captured - before;`,
      `setTimeout(() => {`,
      `  const destroyHooks = createRequire(import.meta.url)('internal/async_hooks').destroyHooksExist();`,
      `  console.log(JSON.stringify({ found, captured, formatted: counts.formatted, destroyHooks }));`,
      `  process.exit(0);`,
      `}, 1000);`,
    ];
    const out = (await run(lines, ['--expose-internals'])) as { found: unknown[]; captured: number; formatted: number; destroyHooks: boolean };
    expect(out.found).toEqual([]);
    expect(out.formatted).toBe(0);
    // 20 streams: captureStacks' one and the two Timeouts each; the three Immediates and the keep-alive timer none
    expect(out.captured).toBe(20 * 3);
    expect(out.destroyHooks).toBe(false);
  });
});
