import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

/**
 * In fresh processes, against the built package (`npm test` builds first): closed streams and hub
 * subscribers are collectable, and nothing of the runtime keeps a process alive.
 */

const run = promisify(execFile);
const dist = resolve('dist/esm/index.js');

async function script(body: string, args: string[] = []): Promise<string> {
  if (!existsSync(dist)) throw new Error('dist/esm/index.js is missing: run `npm run build` first');
  const dir = mkdtempSync(join(tmpdir(), 'streamscope-life-'));
  try {
    const file = join(dir, 'main.mjs');
    writeFileSync(file, `import * as ss from ${JSON.stringify(dist)};\nimport http from 'node:http';\n${body}`);
    const { stdout } = await run(process.execPath, [...args, file], { timeout: 30_000 });
    return stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const COMMON = `
const refs = [];
function listen(handler) {
  const server = http.createServer(handler);
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
}
function open(port, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers }, (res) => {
      res.once('data', () => resolve(req));
    });
    req.on('error', reject);
  });
}
`;

describe('sse() and the hub release what they hold', () => {
  it('closed streams and hub subscribers are garbage-collected', async () => {
    const out = await script(
      `${COMMON}
const hub = ss.createHub({ heartbeatMs: 1000, timeoutMs: 60000 });
const opts = { heartbeatMs: 1000, timeoutMs: 60000 };
const server = await listen(async (req, res) => {
  refs.push(new WeakRef(res));
  if (req.url.startsWith('/hub')) {
    const s = await hub.subscribe(req, res, 'c');
    if (s) refs.push(new WeakRef(s));
  } else {
    const s = ss.sse(req, res, opts);
    refs.push(new WeakRef(s));
    s.run(async (st) => { for (;;) { await st.send('x'); await new Promise((r) => setTimeout(r, 5)); } });
  }
});
const port = server.address().port;
await hub.publish('c', 'first');
const clients = [];
for (let i = 0; i < 50; i++) clients.push(await open(port, '/hub', { 'Last-Event-ID': '0-0' }));
for (let i = 0; i < 50; i++) clients.push(await open(port, '/sse'));
for (const c of clients) c.destroy();
clients.length = 0;
for (let i = 0; i < 50 && refs.some((r) => r.deref() !== undefined); i++) {
  await new Promise((r) => setTimeout(r, 20));
  globalThis.gc();
}
console.log(JSON.stringify({ total: refs.length, alive: refs.filter((r) => r.deref() !== undefined).length, subscribers: hub.subscribers() }));
server.close();
await hub.close();
`,
      ['--expose-gc'],
    );
    const r = JSON.parse(out.trim().split('\n').pop()!) as { total: number; alive: number; subscribers: number };
    expect(r.total).toBe(200);
    expect(r.subscribers).toBe(0);
    expect(r.alive).toBe(0);
  });

  it('an idle stream with heartbeat and timeout timers does not keep the process alive', async () => {
    const out = await script(`${COMMON}
const hub = ss.createHub({ heartbeatMs: 60000, timeoutMs: 600000 });
const server = await listen((req, res) => { void hub.subscribe(req, res, 'c'); });
const port = server.address().port;
await hub.publish('c', 'x');
const client = await open(port, '/', { 'Last-Event-ID': '0-0' });
// everything but the library's own timers goes away; the process must then exit by itself
setTimeout(() => { client.destroy(); server.close(); server.closeAllConnections(); console.log('released'); }, 50);
process.on('exit', () => console.log('exited'));
`);
    expect(out).toContain('released');
    expect(out).toContain('exited');
  });
});
