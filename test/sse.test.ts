import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { instrument, sse, StreamClosedError, type SseOptions, type SseStream } from '../src/index.js';
import { neverReadingClient, newRegistry, scrape, startServer, sum, until, type TestServer } from './helpers/http.js';
import { openSse } from './helpers/sse.js';

const servers: TestServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.close();
});

/** Serves `sse()` with the given options; every stream opened is recorded for the test to inspect. */
async function serveSse(options: SseOptions, producer?: (s: SseStream, req: http.IncomingMessage, res: http.ServerResponse) => unknown) {
  const streams: SseStream[] = [];
  const responses: http.ServerResponse[] = [];
  const srv = await startServer((req, res) => {
    const s = sse(req, res, options);
    streams.push(s);
    responses.push(res);
    if (producer) void producer(s, req, res);
  });
  servers.push(srv);
  return { srv, streams, responses };
}

async function outcomes(registry: ReturnType<typeof newRegistry>, route: string) {
  const m = await scrape(registry);
  return {
    started: sum(m, 'stream_started_total', { route }),
    durationCount: sum(m, 'stream_duration_seconds_count', { route }),
    active: sum(m, 'stream_active_connections', { route }),
    by: (outcome: string) => sum(m, 'stream_duration_seconds_count', { route, outcome }),
  };
}

async function settled(registry: ReturnType<typeof newRegistry>, route: string, n: number) {
  const v = await until(async () => {
    const o = await outcomes(registry, route);
    return o.durationCount === n ? o : null;
  }, `${n} streams closed on ${route}`);
  return v!;
}

describe('sse() framing and headers', () => {
  it('frames multi-line data, event, id, retry and comments so a real parser reads them back', async () => {
    const registry = newRegistry();
    const { srv } = await serveSse({ registry, route: '/frames', retryMs: 1234, heartbeatMs: 0 }, async (s) => {
      await s.send({ id: '1-0', event: 'greeting', data: 'line one\nline two\r\nline three' });
      s.comment('a comment');
      await s.send({ id: '1-1', data: { json: true, n: 2 } });
      await s.send(' leading space');
      s.close();
    });
    const c = await openSse(srv.url);
    await c.ended;
    expect(c.status).toBe(200);
    expect(c.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(c.headers['cache-control']).toBe('no-cache');
    expect(c.headers['x-accel-buffering']).toBe('no');
    expect(c.retry).toEqual([1234]);
    expect(c.comments).toContain('a comment');
    expect(c.events.map((e) => ({ id: e.id, event: e.event, data: e.data }))).toEqual([
      { id: '1-0', event: 'greeting', data: 'line one\nline two\nline three' },
      { id: '1-1', event: undefined, data: '{"json":true,"n":2}' },
      { id: undefined, event: undefined, data: ' leading space' },
    ]);
    const o = await settled(registry, '/frames', 1);
    expect(o.started).toBe(1);
    expect(o.by('completed')).toBe(1);
    expect(o.active).toBe(0);
  });

  it('refuses an id or event type with a line break (no event can forge another)', async () => {
    const results: unknown[] = [];
    const { srv } = await serveSse({ heartbeatMs: 0 }, async (s) => {
      for (const ev of [{ id: 'a\nid: b', data: 'x' }, { event: 'x\r\ndata: forged', data: 'y' }]) {
        results.push(await s.send(ev).catch((e: { code?: string }) => e.code));
      }
      s.close();
    });
    const c = await openSse(srv.url);
    await c.ended;
    expect(results).toEqual(['STREAMSCOPE_ERR_INVALID_EVENT', 'STREAMSCOPE_ERR_INVALID_EVENT']);
    expect(c.events).toEqual([]);
  });

  it('sends heartbeat comments while the producer is quiet', async () => {
    const { srv } = await serveSse({ heartbeatMs: 30 });
    const c = await openSse(srv.url);
    await until(() => c.comments.length >= 3, 'three heartbeats');
    expect(c.events).toEqual([]);
    c.close();
  });
});

describe('sse() cancellation', () => {
  it('client gone: signal aborts, send() rejects with StreamClosedError, outcome client_aborted', async () => {
    const registry = newRegistry();
    const { srv, streams } = await serveSse({ registry, route: '/gone', heartbeatMs: 0 });
    const c = await openSse(srv.url);
    await until(() => streams.length === 1, 'stream opened');
    const s = streams[0]!;
    const aborted = new Promise((r) => s.signal.addEventListener('abort', () => r(s.signal.reason)));
    c.close();
    const reason = await aborted;
    expect(reason).toBeInstanceOf(StreamClosedError);
    await expect(s.send('late')).rejects.toBeInstanceOf(StreamClosedError);
    expect(s.closed).toBe(true);
    const o = await outcomes(registry, '/gone');
    expect(o.by('client_aborted')).toBe(1);
    expect(o.active).toBe(0);
    // the rejected send never reached the socket: no write after close
    expect(sum(await scrape(registry), 'stream_writes_after_close_total', { route: '/gone' })).toBe(0);
  });

  it('timeoutMs ends the stream with outcome timeout and aborts the signal', async () => {
    const registry = newRegistry();
    const { srv, streams } = await serveSse({ registry, route: '/timeout', timeoutMs: 50, heartbeatMs: 0 });
    const c = await openSse(srv.url);
    await c.ended;
    expect(streams[0]!.signal.aborted).toBe(true);
    const o = await settled(registry, '/timeout', 1);
    expect(o.by('timeout')).toBe(1);
    expect(o.active).toBe(0);
  });

  it('close() completes the stream, aborts the signal and later sends reject', async () => {
    const registry = newRegistry();
    const { srv, streams } = await serveSse({ registry, route: '/close', heartbeatMs: 0 }, async (s) => {
      await s.send('one');
      s.close();
    });
    const c = await openSse(srv.url);
    await c.ended;
    expect(c.events.map((e) => e.data)).toEqual(['one']);
    expect(streams[0]!.signal.aborted).toBe(true);
    await expect(streams[0]!.send('two')).rejects.toBeInstanceOf(StreamClosedError);
    const o = await settled(registry, '/close', 1);
    expect(o.by('completed')).toBe(1);
  });

  it('a producer that throws ends the stream with an error event (code, message, trace id) and outcome error', async () => {
    const registry = newRegistry();
    const provider = new BasicTracerProvider();
    const tracer = provider.getTracer('test');
    const { srv, streams } = await serveSse({ registry, route: '/boom', heartbeatMs: 0, tracer, exposeErrors: true }, (s) =>
      s.run(async (stream) => {
        await stream.send({ id: '1-0', data: 'before' });
        throw Object.assign(new Error('database went away'), { code: 'E_DB_GONE' });
      }),
    );
    const c = await openSse(srv.url);
    await c.ended;
    expect(c.events[0]?.data).toBe('before');
    const err = c.events.find((e) => e.event === 'error');
    expect(err).toBeDefined();
    const body = JSON.parse(err!.data) as { code: string; message: string; traceId: string };
    expect(body.code).toBe('E_DB_GONE');
    expect(body.message).toBe('database went away');
    expect(body.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(body.traceId).toBe(streams[0]!.traceId);
    const o = await settled(registry, '/boom', 1);
    expect(o.by('error')).toBe(1);
  });

  it('without exposeErrors the error event carries a generic message, not the producer’s', async () => {
    const { srv } = await serveSse({ heartbeatMs: 0 }, (s) =>
      s.run(() => {
        throw new Error('secret internals');
      }),
    );
    const c = await openSse(srv.url);
    await c.ended;
    const body = JSON.parse(c.events.find((e) => e.event === 'error')!.data) as { code: string; message: string };
    expect(body.code).toBe('STREAMSCOPE_ERR_PRODUCER');
    expect(body.message).not.toContain('secret');
  });
});

describe('sse() backpressure', () => {
  const big = 'x'.repeat(64 * 1024);

  it('send() waits for drain while the client is slow, then every event arrives in order', async () => {
    const registry = newRegistry();
    let sendsThatWaited = 0;
    let resolvedBeforeDrain = 0;
    let waitingNow = false;
    const total = 120; // ~7.5 MiB: more than the kernel buffers hold
    const { srv } = await serveSse({ registry, route: '/slow', heartbeatMs: 0, drainTimeoutMs: 30_000 }, async (s, _req, res) => {
      let drained = 0;
      res.on('drain', () => drained++);
      for (let i = 0; i < total; i++) {
        const before = drained;
        const p = s.send({ id: `1-${i}`, data: big });
        const waiting = res.writableNeedDrain;
        waitingNow = waiting;
        await p.catch(() => {});
        waitingNow = false;
        if (waiting) {
          sendsThatWaited++;
          if (drained === before) resolvedBeforeDrain++;
        }
      }
      s.close();
    });
    const c = await openSse(srv.url);
    c.res.pause();
    // the server fills every buffer and then waits in send(); only then does the client read
    await until(() => waitingNow, 'a send() waiting for drain', 30_000);
    c.res.resume();
    await c.ended;
    expect(c.events.map((e) => e.id)).toEqual(Array.from({ length: total }, (_, i) => `1-${i}`));
    expect(sendsThatWaited).toBeGreaterThan(0);
    expect(resolvedBeforeDrain).toBe(0);
    const m = await scrape(registry);
    expect(sum(m, 'write_blocked_total', { route: '/slow' })).toBeGreaterThan(0);
  });

  it('a consumer that never drains is cut after drainTimeoutMs: send() rejects, outcome timeout', async () => {
    const registry = newRegistry();
    let failure: unknown;
    const { srv } = await serveSse({ registry, route: '/stuck', heartbeatMs: 0, drainTimeoutMs: 100 }, async (s) => {
      try {
        for (let i = 0; ; i++) await s.send({ id: `1-${i}`, data: big });
      } catch (err) {
        failure = err;
      }
    });
    const sock = await neverReadingClient(srv.port, '/');
    sock.on('error', () => {});
    await until(() => failure !== undefined, 'the stuck send to fail', 30_000);
    expect(failure).toBeInstanceOf(StreamClosedError);
    expect(((failure as Error).cause as { code?: string }).code).toBe('STREAMSCOPE_ERR_DRAIN_TIMEOUT');
    const o = await settled(registry, '/stuck', 1);
    expect(o.by('timeout')).toBe(1);
    expect(o.active).toBe(0);
    sock.destroy();
  });

  it('a producer that ignores backpressure is bounded by maxBufferedBytes: the stream is cut, not the memory', async () => {
    const registry = newRegistry();
    let accepted = 0;
    let rejected: unknown;
    let maxQueued = 0;
    const cap = 512 * 1024;
    const { srv } = await serveSse({ registry, route: '/flood', heartbeatMs: 0, maxBufferedBytes: cap }, (s, _req, res) => {
      const tick = (): void => {
        for (let i = 0; i < 16 && rejected === undefined; i++) {
          s.send({ data: big }).then(
            () => accepted++,
            (e: unknown) => (rejected ??= e),
          );
          maxQueued = Math.max(maxQueued, res.writableLength);
        }
        if (rejected === undefined && !s.closed) setImmediate(tick);
      };
      tick();
    });
    const sock = await neverReadingClient(srv.port, '/');
    sock.on('error', () => {});
    await until(() => rejected !== undefined, 'the flood to be cut', 30_000);
    expect(rejected).toBeInstanceOf(StreamClosedError);
    expect(((rejected as Error).cause as { code?: string }).code).toBe('STREAMSCOPE_ERR_BUFFER_FULL');
    expect(maxQueued).toBeLessThanOrEqual(cap + big.length + 1024);
    const o = await settled(registry, '/flood', 1);
    expect(o.by('error')).toBe(1);
    expect(o.active).toBe(0);
    sock.destroy();
  });
});

describe('sse() options', () => {
  it('rejects invalid options at setup with STREAMSCOPE_ERR_INVALID_OPTION', () => {
    const req = {} as http.IncomingMessage;
    const res = {} as http.ServerResponse;
    for (const bad of [{ heartbeatMs: -1 }, { maxBufferedBytes: 0 }, { timeoutMs: 'x' }, { rateLimit: { burst: 0, perSecond: 1 } }]) {
      expect(() => sse(req, res, bad as SseOptions)).toThrow(expect.objectContaining({ code: 'STREAMSCOPE_ERR_INVALID_OPTION' }));
    }
  });

  it('many streams opened and closed every way leave the active gauge at 0 and one outcome each', async () => {
    const registry = newRegistry();
    const opts: SseOptions = { registry, route: '/mix', heartbeatMs: 0, timeoutMs: 2000 };
    let n = 0;
    const { srv } = await serveSse(opts, async (s) => {
      const k = n++ % 3;
      await s.send('hello').catch(() => {});
      if (k === 0) s.close();
      else if (k === 1) s.fail(new Error('x'));
      // k === 2: the client goes away
    });
    const clients = await Promise.all(Array.from({ length: 30 }, () => openSse(srv.url)));
    await until(() => clients.every((c) => c.events.length >= 1), 'first events');
    for (const c of clients) c.close();
    const o = await settled(registry, '/mix', 30);
    expect(o.started).toBe(30);
    expect(o.active).toBe(0);
    expect(o.by('completed') + o.by('error') + o.by('client_aborted') + o.by('timeout')).toBe(30);
    expect(o.by('error')).toBe(10);
  });

  it('inside an instrument()ed handler the stream is tracked once, with sse()’s outcome', async () => {
    const registry = newRegistry();
    const opts: SseOptions = { registry, route: '/both', heartbeatMs: 0, timeoutMs: 30 };
    const srv = await startServer(
      instrument(
        async (req: http.IncomingMessage, res: http.ServerResponse) => {
          const s = sse(req, res, opts);
          await s.send('x');
        },
        { registry, route: '/both' },
      ),
    );
    servers.push(srv);
    const c = await openSse(srv.url);
    await c.ended;
    const o = await settled(registry, '/both', 1);
    expect(o.started).toBe(1);
    expect(o.by('timeout')).toBe(1);
  });
});

