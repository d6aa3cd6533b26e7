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
