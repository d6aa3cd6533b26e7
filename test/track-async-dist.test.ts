import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { Registry } from 'prom-client';
import { sleep, until } from './helpers/http.js';

/**
 * `trackAsync` in what users install (the built package, where streamscope's code lives in bundled
 * chunk files): a clean handler raises nothing, a handler that leaves an interval running raises
 * `dangling_async` with the user's frame — under instrument(), the Express, Fastify and Koa adapters,
 * and sse(). And stream ids stay unique when the ESM and CJS builds are both loaded.
 */

const dist = resolve('dist/esm');
type Lib = typeof import('../src/index.js');
let ss: Lib;
let ex: typeof import('../src/adapters/express.js');
let fy: typeof import('../src/adapters/fastify.js');
let ko: typeof import('../src/adapters/koa.js');
beforeAll(async () => {
  if (!existsSync(join(dist, 'index.js'))) throw new Error('dist/esm is missing: run `npm run build` first');
  ss = (await import(join(dist, 'index.js'))) as Lib;
  ex = (await import(join(dist, 'express.js'))) as typeof ex;
  fy = (await import(join(dist, 'fastify.js'))) as typeof fy;
  ko = (await import(join(dist, 'koa.js'))) as typeof ko;
});

const DANGLE = 300;
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

function collect(prefix: string): Array<{ kind: string; route: string; stack?: string; detail: string }> {
  const seen: Array<{ kind: string; route: string; stack?: string; detail: string }> = [];
  cleanup.push(ss.onFinding((f) => f.route.startsWith(prefix) && seen.push(f)));
  return seen;
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** GETs `path` to the end over a keep-alive agent (the socket stays open afterwards, as browsers keep it). */
function getAll(base: string, path: string, agent: http.Agent): Promise<number> {
  return new Promise((res, rej) => {
    http
      .get(`${base}${path}`, { agent }, (r) => {
        r.resume();
        r.on('end', () => res(r.statusCode ?? 0));
      })
      .on('error', rej);
  });
}

/** The stream body: three events, 5 ms apart; `leak` leaves an interval running after the end. */
async function body(res: http.ServerResponse, leak: boolean): Promise<void> {
  if (!res.headersSent) res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  for (let i = 0; i < 3; i++) {
    res.write(`data: ${i}\n\n`);
    await sleep(5);
  }
  if (leak) {
    const poll = setInterval(() => undefined, 1000);
    cleanup.push(() => clearInterval(poll));
  }
  res.end();
}

type Mount = (opts: { registry: Registry; route: string; trackAsync: true; danglingAfterMs: number }) => Promise<string>;

const mounts: Record<string, Mount> = {
  'instrument()': async (o) => {
    const h = ss.instrument((req: http.IncomingMessage, res: http.ServerResponse) => body(res, req.url === '/leak'), { ...o, route: (req) => `${o.route}${req.url}` });
    return listen(http.createServer(h));
  },
  'streamscope/express': async (o) => {
    const app = express();
    app.use(ex.streamscope({ ...o, route: (req) => `${o.route}${req.url}` }));
    app.get('/:kind', (req, res) => void body(res, req.params.kind === 'leak'));
    return listen(http.createServer(app));
  },
  'streamscope/fastify': async (o) => {
    const app = Fastify({ logger: false });
    await app.register(fy.streamscopeFastify, { ...o, route: (req) => `${o.route}${req.url}` });
    app.get('/:kind', async (req, reply) => {
      reply.hijack();
      await body(reply.raw, (req.params as { kind: string }).kind === 'leak');
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanup.push(() => app.close());
    return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  },
  'streamscope/koa': async (o) => {
    const app = new Koa();
    app.use(ko.streamscopeKoa({ ...o, route: (req) => `${o.route}${req.url}` }));
    app.use(async (ctx) => {
      ctx.respond = false;
      await body(ctx.res, ctx.path === '/leak');
    });
    return listen(http.createServer(app.callback()));
  },
  'sse()': async (o) => {
    const opts = { ...o, heartbeatMs: 0, route: (req: http.IncomingMessage) => `${o.route}${req.url}` };
    return listen(
      http.createServer((req, res) => {
        const stream = ss.sse(req, res, opts);
        void stream.run(async (st) => {
          for (let i = 0; i < 3; i++) await st.send(String(i));
          if (req.url === '/leak') {
            const poll = setInterval(() => undefined, 1000);
            cleanup.push(() => clearInterval(poll));
          }
        });
      }),
    );
  },
};

describe('trackAsync through the built package', () => {
  for (const [name, mount] of Object.entries(mounts)) {
    it(`${name}: a clean handler raises nothing; one that leaves an interval running raises dangling_async with the user's frame`, async () => {
      const route = `/ta-${name.replace(/\W/g, '')}`;
      const seen = collect(route);
      const base = await mount({ registry: new Registry(), route, trackAsync: true, danglingAfterMs: DANGLE });
      const agent = new http.Agent({ keepAlive: true });
      cleanup.push(() => agent.destroy());
      // The leak first: the clean streams come after it on the same keep-alive socket, so the last of
      // them is the one in whose context Node arms the socket's keep-alive timer (not the handler's).
      expect(await getAll(base, '/leak', agent)).toBe(200);
      for (let i = 0; i < 3; i++) expect(await getAll(base, '/clean', agent)).toBe(200);
      await until(() => seen.some((f) => f.route === `${route}/leak`), `dangling_async for ${name}`, 10_000);
      await sleep(DANGLE * 2 + 500); // well past the clean streams' threshold too
      const leak = seen.filter((f) => f.route === `${route}/leak`);
      expect(leak.map((f) => f.kind)).toContain('dangling_async');
      const f = leak.find((x) => x.kind === 'dangling_async')!;
      expect(f.detail).toMatch(/^1 Timeout created by the stream's handler/);
      expect(f.stack).toContain('track-async-dist.test.ts');
      expect(f.stack).not.toMatch(/AsyncHook|chunk-/);
      expect(seen.filter((x) => x.route === `${route}/clean`)).toEqual([]);
    });
  }
});

async function runScript(body: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'streamscope-ta-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'main.mjs');
  writeFileSync(file, body);
  const { stdout } = await promisify(execFile)(process.execPath, [file], { timeout: 30_000 });
  return stdout.trim();
}

describe('trackAsync in a plain node process on the built package', () => {
  it('a clean async handler served over keep-alive raises nothing (the hook frame of a bundled chunk is not a user frame)', async () => {
    const out = await runScript(`import http from 'node:http';
import * as ss from ${JSON.stringify(join(dist, 'index.js'))};
const found = [];
ss.onFinding((f) => found.push({ kind: f.kind, stack: f.stack }));
const agent = new http.Agent({ keepAlive: true });
const h = ss.instrument(async (req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  for (let i = 0; i < 3; i++) { res.write('data: ' + i + '\\n\\n'); await new Promise((r) => setTimeout(r, 5)); }
  res.end();
}, { trackAsync: true, danglingAfterMs: 200, route: '/clean' });
const srv = http.createServer(h).listen(0, '127.0.0.1', async () => {
  for (let i = 0; i < 3; i++) await new Promise((r) => http.get({ port: srv.address().port, agent }, (res) => { res.resume(); res.on('end', r); }));
  setTimeout(() => { console.log(JSON.stringify(found)); process.exit(0); }, 1200);
});
`);
    expect(JSON.parse(out)).toEqual([]);
  });
});

describe('stream ids are process-wide', () => {
  it('the ESM and CJS builds loaded in one process never give two streams the same id', async () => {
    const stdout = await runScript(
      `import http from 'node:http';
import { createRequire } from 'node:module';
import * as esm from ${JSON.stringify(join(dist, 'index.js'))};
const cjs = createRequire(import.meta.url)(${JSON.stringify(resolve('dist/cjs/index.cjs'))});
const ids = [];
const handler = (lib) => lib.instrument((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  res.write('data: 1\\n\\n');
  setTimeout(() => { ids.push(...lib.streams().map((s) => s.id)); res.end(); }, 20);
}, { route: '/ids' });
const servers = [esm, cjs, esm, cjs].map((lib) => http.createServer(handler(lib)));
for (const s of servers) await new Promise((r) => s.listen(0, '127.0.0.1', r));
for (const s of servers) await new Promise((r) => http.get({ host: '127.0.0.1', port: s.address().port, agent: false }, (res) => { res.resume(); res.on('end', r); }));
console.log(JSON.stringify([...new Set(ids)]));
process.exit(0);
`,
    );
    const ids = JSON.parse(stdout.trim()) as number[];
    expect(ids).toHaveLength(4);
    expect(new Set(ids).size).toBe(4);
  });
});
