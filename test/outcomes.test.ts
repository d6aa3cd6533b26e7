import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { Registry } from 'prom-client';
import { instrument, type Outcome } from '../src/index.js';
import { get, getAndAbort, scrape, serverPool, sleep, until } from './helpers/http.js';

const serve = serverPool(afterEach);

async function outcomes(registry: Registry): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of await scrape(registry)) {
    if (s.name === 'stream_duration_seconds_count') out[s.labels.outcome!] = (out[s.labels.outcome!] ?? 0) + s.value;
  }
  return out;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => unknown;

interface Case {
  name: string;
  outcome: Outcome;
  handler: Handler;
  /** How the server calls the instrumented handler (default: directly). */
  host?: (h: Handler) => http.RequestListener;
  client?: 'read' | 'abort';
  serverTimeoutMs?: number;
}

const openSse = (res: http.ServerResponse): void => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  res.write('data: 1\n\n');
};

const boom = new Error('boom');
const seen: unknown[] = [];

const cases: Case[] = [
  {
    name: 'completed',
    outcome: 'completed',
    handler: async (_req, res) => {
      openSse(res);
      await sleep(5);
      res.end('data: 2\n\n');
    },
  },
  {
    name: 'client_aborted when the client closes mid-stream',
    outcome: 'client_aborted',
    client: 'abort',
    handler: (_req, res) => {
      openSse(res);
      const t = setInterval(() => res.write('data: tick\n\n'), 5);
      res.on('close', () => clearInterval(t));
    },
  },
  {
    name: 'error when the handler throws synchronously; the caller gets the same error',
    outcome: 'error',
    handler: (_req, res) => {
      openSse(res);
      throw boom;
    },
    host: (h) => (req, res) => {
      try {
        h(req, res);
      } catch (err) {
        seen.push(err);
        res.end();
      }
    },
  },
  {
    name: 'error when the handler rejects; the caller gets the same rejection',
    outcome: 'error',
    handler: async (_req, res) => {
      openSse(res);
      await sleep(5);
      throw boom;
    },
    host: (h) => (req, res) => {
      (h(req, res) as Promise<void>).catch((err: unknown) => {
        seen.push(err);
        res.destroy();
      });
    },
  },
  {
    name: 'error when the app destroys the response',
    outcome: 'error',
    handler: async (_req, res) => {
      openSse(res);
      await sleep(10);
      res.destroy();
    },
  },
  {
    name: 'error when the response is destroyed with an error',
    outcome: 'error',
    handler: async (_req, res) => {
      openSse(res);
      await sleep(5);
      res.destroy(new Error('upstream failed'));
    },
  },
  {
    name: 'timeout when the server socket times out',
    outcome: 'timeout',
    serverTimeoutMs: 200,
    handler: (_req, res) => openSse(res), // never writes again
  },
  {
    // nothing wraps the socket's destroy(): the cut is read from the socket when the response closes
    name: 'error when the app destroys the socket under an open stream',
    outcome: 'error',
    handler: async (req, res) => {
      openSse(res);
      await sleep(10);
      req.socket.destroy();
    },
  },
  {
    name: 'error when the app destroys the socket with an error',
    outcome: 'error',
    handler: async (req, res) => {
      openSse(res);
      await sleep(5);
      req.socket.destroy(new Error('upstream failed'));
    },
  },
  {
    // node:http emits the socket's timeout on the response: the app's own handler ends the stream
    name: "timeout when the response's own timeout fires and the app ends the stream",
    outcome: 'timeout',
    handler: (_req, res) => {
      openSse(res);
      res.setTimeout(150, () => res.end('data: bye\n\n'));
    },
  },
];

describe('outcomes: exactly one per stream', () => {
  for (const c of cases) {
    it(c.name, async () => {
      seen.length = 0;
      const registry = new Registry();
      const h = instrument(c.handler, { registry, route: '/o' });
      const srv = await serve(c.host ? c.host(h) : (h as http.RequestListener));
      if (c.serverTimeoutMs) srv.server.setTimeout(c.serverTimeoutMs);
      if (c.client === 'abort') await getAndAbort(srv.url, 30);
      else await get(srv.url).catch(() => undefined);
      await until(async () => (await outcomes(registry))[c.outcome] === 1, c.outcome);
      expect(await outcomes(registry)).toEqual({ [c.outcome]: 1 });
      if (c.host) expect(seen).toEqual([boom]);
    });
  }
});
