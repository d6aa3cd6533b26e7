import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');

interface Msg {
  ch: string;
  m: Record<string, unknown> & { finding?: Record<string, unknown> };
}

/**
 * The lifecycle channels are public API (docs/channels.md). Run through the built package, with the ESM
 * and the CJS builds both loaded, as an APM that subscribes with `node:diagnostics_channel` would see them.
 */
describe('lifecycle events on diagnostics_channel', () => {
  it('every stream publishes one open and one close carrying its outcome, bytes and writes; findings are published', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ss-channels-'));
    const script = join(dir, 'channels.mjs');
    writeFileSync(
      script,
      `
import http from 'node:http';
import dc from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import * as esm from ${JSON.stringify(join(root, 'dist/esm/index.js'))};
const require = createRequire(${JSON.stringify(join(root, 'package.json'))});
const cjs = require(${JSON.stringify(join(root, 'dist/cjs/index.cjs'))});
const names = esm.channelNames;
if (JSON.stringify(names) !== JSON.stringify(cjs.channelNames)) throw new Error('the builds disagree on channel names');
const seen = [];
for (const name of Object.values(names)) {
  dc.subscribe(name, (m) => seen.push({ ch: name, m: { ...m, response: m.response === undefined ? undefined : typeof m.response } }));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const done = cjs.instrument(async (req, res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (let i = 0; i < 5; i++) { res.write('data: ' + i + '\\n\\n'); await sleep(2); }
  res.end();
}, { route: '/done' });
const zombie = esm.instrument(async (req, res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write('data: first\\n\\n');
  // a producer that never learns the client left
  for (let i = 0; i < 6; i++) { await sleep(30); res.write('data: more\\n\\n'); }
}, { route: '/zombie' });
const server = http.createServer((req, res) => (req.url === '/zombie' ? zombie(req, res) : done(req, res))).listen(0, '127.0.0.1', async () => {
  const { port } = server.address();
  const bodies = [];
  for (let i = 0; i < 3; i++) bodies.push(await (await fetch('http://127.0.0.1:' + port + '/done')).text());
  await new Promise((resolve) => {
    const req = http.get('http://127.0.0.1:' + port + '/zombie', (res) => res.once('data', () => { req.destroy(); resolve(); }));
  });
  // the sweep (every 250 ms) raises zombie_producer once 3 writes arrived after the close
  for (let i = 0; i < 100 && !seen.some((s) => s.ch === names.finding); i++) await sleep(50);
  console.log(JSON.stringify({ seen, bodyBytes: bodies.map((b) => Buffer.byteLength(b)) }));
  server.close();
});
`,
    );
    const { stdout } = await run(process.execPath, [script], { cwd: root, timeout: 30_000 });
    const { seen, bodyBytes } = JSON.parse(stdout) as { seen: Msg[]; bodyBytes: number[] };
    const opens = seen.filter((s) => s.ch === 'streamscope:stream:open');
    const closes = seen.filter((s) => s.ch === 'streamscope:stream:close');
    // one open and one close per stream, never twice although two copies of the package are loaded
    expect(opens.map((o) => o.m.route).sort()).toEqual(['/done', '/done', '/done', '/zombie']);
    expect(closes.map((c) => c.m.id).sort()).toEqual(opens.map((o) => o.m.id).sort());
    expect(new Set(opens.map((o) => o.m.id)).size).toBe(4);
    for (const o of opens) {
      expect(o.m.method).toBe('GET');
      expect(o.m.response).toBe('object');
      expect(typeof o.m.startedAt).toBe('number');
    }
    const completed = closes.filter((c) => c.m.route === '/done');
    expect(completed.map((c) => c.m.outcome)).toEqual(['completed', 'completed', 'completed']);
    // the bytes and writes in the close message are what the client received
    expect(completed.map((c) => c.m.bytes)).toEqual(bodyBytes);
    expect(completed.every((c) => c.m.writes === 5)).toBe(true);
    for (const c of closes) expect(c.m.durationMs as number).toBeGreaterThan(0);
    const aborted = closes.find((c) => c.m.route === '/zombie');
    expect(aborted?.m.outcome).toBe('client_aborted');
    // first write precedes close for every stream
    const firstWrites = seen.filter((s) => s.ch === 'streamscope:stream:first_write');
    expect(firstWrites.map((f) => f.m.id).sort()).toEqual(opens.map((o) => o.m.id).sort());
    const finding = seen.find((s) => s.ch === 'streamscope:finding');
    expect(finding?.m.finding?.kind).toBe('zombie_producer');
    expect(finding?.m.finding?.streamId).toBe(aborted?.m.id);
  });
});
