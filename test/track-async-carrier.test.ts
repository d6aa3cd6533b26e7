import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { instrument, observeAll } from '../src/index.js';
import { get, sleep, until } from './helpers/http.js';
import { testScope } from './helpers/scope.js';

/**
 * How `trackAsync` carries the stream from its handler to what the handler schedules (src/consumers/detectors/
 * async-tracking.ts): on Node 20 its own init hook copies the stream from resource to resource, as
 * AsyncLocalStorage's did; on Node 24 AsyncLocalStorage (AsyncContextFrame) carries it. Either way: what the handler
 * creates, across awaits, belongs to its stream and to no other; what runs outside the handler belongs to none; and
 * observeAll's dispatch (enterWith) carries it as instrument's run does.
 */

const DANGLE = 300;
const { cleanup, serve, collect } = testScope();
const opts = (route: string) => ({ registry: new Registry(), route, danglingAfterMs: DANGLE, trackAsync: true });

describe('trackAsync: the stream travels with its handler, and only there', () => {
  it('a timer set after awaits is its own stream\'s, not a concurrent stream\'s; what follows the handler is no stream\'s', async () => {
    const leaky = collect('/carrier/leaky');
    const tidy = collect('/carrier/tidy');
    const stream = async (res: import('node:http').ServerResponse, leak: boolean): Promise<void> => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      for (let i = 0; i < 3; i++) {
        res.write(`data: ${i}\n\n`);
        await sleep(5);
        await Promise.resolve();
      }
      if (leak) {
        const t = setInterval(function leftRunning() {}, 1000);
        cleanup.push(() => clearInterval(t));
      }
      res.end();
    };
    const leakyHandler = instrument((_req, res) => stream(res, true), opts('/carrier/leaky'));
    const tidyHandler = instrument((_req, res) => stream(res, false), opts('/carrier/tidy'));
    const srv = await serve((req, res) => {
      if (req.url === '/leaky') {
        void leakyHandler(req, res);
      } else {
        void tidyHandler(req, res);
        // the request listener goes on after the handler returned: not the stream's (the carrier is restored)
        const t = setInterval(function afterTheHandler() {}, 1000);
        cleanup.push(() => clearInterval(t));
      }
    });
    await Promise.all([get(`${srv.url}/leaky`), get(`${srv.url}/tidy`), get(`${srv.url}/leaky`), get(`${srv.url}/tidy`)]);
    await until(() => leaky.filter((f) => f.kind === 'dangling_async').length === 2, 'dangling_async on both leaky streams');
    for (const f of leaky.filter((x) => x.kind === 'dangling_async')) {
      expect(f.detail).toMatch(/1 Timeout/);
      expect(f.stack).toMatch(/leftRunning|track-async-carrier\.test\.ts/);
    }
    await sleep(DANGLE + 600);
    expect(tidy).toEqual([]);
  });

  it('observeAll: the request listener\'s dispatch and what it schedules are the stream\'s', async () => {
    const seen = collect('/carrier/observed');
    const stop = observeAll(opts('/carrier/observed'));
    cleanup.push(stop);
    const srv = await serve(async (req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: 1\n\n');
      await sleep(5);
      res.write('data: 2\n\n');
      if (req.url === '/leaky') {
        const t = setInterval(function leftByTheListener() {}, 1000);
        cleanup.push(() => clearInterval(t));
      }
      res.end();
    });
    await get(`${srv.url}/tidy`);
    await get(`${srv.url}/leaky`);
    await until(() => seen.some((f) => f.kind === 'dangling_async'), 'dangling_async under observeAll');
    await sleep(DANGLE + 600);
    const dangling = seen.filter((f) => f.kind === 'dangling_async');
    expect(dangling).toHaveLength(1);
    expect(dangling[0]!.detail).toMatch(/1 Timeout/);
    expect(dangling[0]!.stack).toMatch(/leftByTheListener|track-async-carrier\.test\.ts/);
  });
});
