import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { get, getAndAbort, scrape, sleep, startServer, sum, until, type TestServer } from './helpers/http.js';

const servers: TestServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.close();
});
async function serve(handler: http.RequestListener): Promise<TestServer> {
  const s = await startServer(handler);
  servers.push(s);
  return s;
}

async function outcomes(registry: Registry): Promise<Record<string, number>> {
  const samples = await scrape(registry);
  const out: Record<string, number> = {};
  for (const s of samples) if (s.name === 'stream_duration_seconds_count') out[s.labels.outcome!] = (out[s.labels.outcome!] ?? 0) + s.value;
  return out;
}

describe('outcomes: exactly one per stream', () => {
  it('completed', async () => {
    const registry = new Registry();
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: 1\n\n');
          await sleep(5);
          res.end('data: 2\n\n');
        },
        { registry, route: '/c' },
      ),
    );
    await get(srv.url);
    await until(async () => (await outcomes(registry)).completed === 1, 'completed');
    expect(await outcomes(registry)).toEqual({ completed: 1 });
  });

  it('client_aborted when the client closes mid-stream', async () => {
    const registry = new Registry();
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          const t = setInterval(() => res.write('data: tick\n\n'), 5);
          res.on('close', () => clearInterval(t));
        },
        { registry, route: '/a' },
      ),
    );
    await getAndAbort(srv.url, 30);
    await until(async () => (await outcomes(registry)).client_aborted === 1, 'client_aborted');
    expect(await outcomes(registry)).toEqual({ client_aborted: 1 });
  });

  it('error when the handler throws synchronously, and the error reaches the caller unchanged', async () => {
    const registry = new Registry();
    const boom = new Error('boom');
    const h = instrument(
      (_req: http.IncomingMessage, res: http.ServerResponse) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: 1\n\n');
        throw boom;
      },
      { registry, route: '/t' },
    );
    let seen: unknown;
    const srv = await serve((req, res) => {
      try {
        h(req, res);
      } catch (err) {
        seen = err;
        res.end();
      }
    });
    await get(srv.url);
    expect(seen).toBe(boom);
    await until(async () => (await outcomes(registry)).error === 1, 'error');
    expect(await outcomes(registry)).toEqual({ error: 1 });
  });

  it('error when the handler rejects, and the same promise is returned', async () => {
    const registry = new Registry();
    const boom = new Error('async boom');
    const h = instrument(
      async (_req: http.IncomingMessage, res: http.ServerResponse) => {
        res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
        res.write('{}\n');
        await sleep(5);
        throw boom;
      },
      { registry, route: '/r' },
    );
    const srv = await serve((req, res) => {
      (h(req, res) as Promise<void>).catch((err: unknown) => {
        expect(err).toBe(boom);
        res.destroy();
      });
    });
    await get(srv.url).catch(() => undefined);
    await until(async () => (await outcomes(registry)).error === 1, 'error');
    expect(await outcomes(registry)).toEqual({ error: 1 });
  });

  it('error when the app destroys the response', async () => {
    const registry = new Registry();
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: 1\n\n');
          await sleep(10);
          res.destroy();
        },
        { registry, route: '/d' },
      ),
    );
    await get(srv.url).catch(() => undefined);
    await until(async () => (await outcomes(registry)).error === 1, 'error');
    expect(await outcomes(registry)).toEqual({ error: 1 });
  });

  it('timeout when the socket times out', async () => {
    const registry = new Registry();
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: 1\n\n');
          // never writes again: the server's socket timeout cuts it
        },
        { registry, route: '/to' },
      ),
    );
    srv.server.setTimeout(200);
    await get(srv.url).catch(() => undefined);
    await until(async () => (await outcomes(registry)).timeout === 1, 'timeout');
    expect(await outcomes(registry)).toEqual({ timeout: 1 });
  });

  it('an error emitted by the response is an error outcome', async () => {
    const registry = new Registry();
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: 1\n\n');
          await sleep(5);
          res.destroy(new Error('upstream failed'));
        },
        { registry, route: '/e' },
      ),
    );
    await get(srv.url).catch(() => undefined);
    await until(async () => (await outcomes(registry)).error === 1, 'error');
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_active_connections')).toBe(0);
  });
});
