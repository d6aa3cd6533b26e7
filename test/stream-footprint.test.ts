import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { instrument } from '../src/index.js';
import { Phase, StreamState, type StreamConfig } from '../src/core/stream-state.js';
import { kState } from '../src/core/symbols.js';
import { scrape, serverPool, sleep, sum, until } from './helpers/http.js';

/**
 * What a tracked stream adds to node:http's own objects (bench/core/notes.md: heap per idle open stream). Every open
 * stream pays it, so it is kept to the response: nothing on the socket (no listener, no own property), and the
 * response's listeners are the app's own (streamscope's `emit` sees close, drain and timeout).
 */

const serve = serverPool(afterEach);

function listeners(e: NodeJS.EventEmitter): Record<string, number> {
  return Object.fromEntries(e.eventNames().map((n) => [String(n), e.listenerCount(n)]));
}

describe('a tracked HTTP/1.1 stream leaves its socket alone', () => {
  it('no listener, no own property on the socket; the response has the same listeners as untracked', async () => {
    const seen: Array<{ sock: Record<string, number>; sockOwn: string[]; res: Record<string, number> }> = [];
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': open\n\n');
      res.once('close', () => undefined);
      setImmediate(() => {
        const sock = req.socket;
        seen.push({ sock: listeners(sock), sockOwn: Reflect.ownKeys(sock).map(String), res: listeners(res) });
        res.end();
      });
    };
    const registry = new Registry();
    const plain = await serve(handler);
    const tracked = await serve(instrument(handler, { registry, route: '/f' }));
    for (const srv of [plain, tracked]) {
      await new Promise<void>((resolve, reject) => {
        http.get(srv.url, { agent: false }, (r) => r.resume().on('end', resolve)).on('error', reject);
      });
    }
    await until(() => seen.length === 2, 'both streams looked at');
    const [a, b] = seen as [(typeof seen)[0], (typeof seen)[0]];
    expect(b.sock).toEqual(a.sock);
    expect(b.sockOwn).toEqual(a.sockOwn);
    expect(b.res).toEqual(a.res);
    // ...and the stream was tracked all the same
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route: '/f', outcome: 'completed' }) === 1, 'closed');
  });

  it("the close is seen even when an app's close listener throws", async () => {
    const registry = new Registry();
    const errors: unknown[] = [];
    const onErr = (err: unknown): void => void errors.push(err);
    process.on('uncaughtException', onErr);
    try {
      const srv = await serve(
        instrument(
          (_req: http.IncomingMessage, res: http.ServerResponse) => {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            res.write(': open\n\n');
            res.on('close', () => {
              throw new Error('app close listener');
            });
          },
          { registry, route: '/t' },
        ),
      );
      const sock = net.connect(Number(new URL(srv.url).port), '127.0.0.1', () => sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      await new Promise((r) => sock.once('data', r));
      sock.destroy();
      await until(() => errors.length === 1, "the app's error");
      await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route: '/t', outcome: 'client_aborted' }) === 1, 'closed');
      expect(sum(await scrape(registry), 'stream_active', { route: '/t' })).toBe(0);
    } finally {
      process.off('uncaughtException', onErr);
    }
  });
});

describe('StreamState: packed fields read back what was written', () => {
  const config = { stallAfterMs: 1, danglingAfterMs: 1, trackAsync: false, captureStacks: false, tracer: undefined, route: undefined } as StreamConfig;

  it('booleans, outcome, muted, the rare fields and the slots are independent of each other (random writes against a plain model)', () => {
    const bools = ['clientClosed', 'promoteScheduled', 'drainListening', 'ended', 'errored', 'timedOut', 'serverDestroyed', 'handlerSettled', 'released'] as const;
    const nums = ['blockedWrites', 'blockedSince', 'writesAfterClose', 'lastWriteAt', 'afterCloseGap', 'closedAt', 'writes', 'bytes', 'listSlot'] as const;
    const outcomes = [null, 'completed', 'client_aborted', 'error', 'timeout'] as const;
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let round = 0; round < 50; round++) {
      const req = { method: 'GET' } as http.IncomingMessage;
      const s = new StreamState(req, { req } as unknown as http.ServerResponse, config, performance.now());
      const model: Record<string, unknown> = {
        ...Object.fromEntries(bools.map((b) => [b, b === 'handlerSettled'])),
        blockedWrites: 0, blockedSince: -1, writesAfterClose: 0, lastWriteAt: -1, afterCloseGap: 0, closedAt: -1, writes: 0, bytes: 0, listSlot: -1,
        outcome: null, muted: 0, traceId: '', parentContext: undefined, req,
      };
      const slots: unknown[] = [];
      let firstWriteAt = -1;
      const st = s as unknown as Record<string, unknown>;
      for (let k = 0; k < 40; k++) {
        const what = rnd(10);
        if (what === 0) { const b = bools[rnd(bools.length)]!; const v = rnd(2) === 1; st[b] = v; model[b] = v; }
        else if (what === 1) { const f = nums[rnd(nums.length)]!; const v = rnd(3) === 0 ? -1 : rnd(1e6) + (rnd(2) ? 0.5 : 0); st[f] = v; model[f] = v; }
        else if (what === 2) { const v = outcomes[rnd(outcomes.length)]!; s.outcome = v; model.outcome = v; }
        else if (what === 3) { const v = rnd(1 << 16); s.muted = v; model.muted = v; }
        else if (what === 4) { const v = rnd(2) ? `t${rnd(100)}` : ''; s.traceId = v; model.traceId = v; }
        else if (what === 5) { const v = [undefined, ROOT_CONTEXT, ROOT_CONTEXT.setValue(Symbol('k'), 1)][rnd(3)]; s.parentContext = v; model.parentContext = v; }
        else if (what === 6) { const i = rnd(10); const v = rnd(2) ? { i } : undefined; s.setSlot(i, v); slots[i] = v; }
        else if (what === 7) { const v = rnd(2) ? null : ({ method: 'POST' } as http.IncomingMessage); s.req = v; model.req = v; }
        else if (what === 8) { const p = [Phase.Pending, Phase.Open, Phase.Closed][rnd(3)]!; s.phase = p; model.phase = p; }
        else { const v = rnd(3) === 0 ? -1 : s.t0 + rnd(1e9) / 1e3 + 0.0004; s.firstWriteAt = v; firstWriteAt = v; }
        for (const [f, v] of Object.entries(model)) expect(st[f], `${f} after write ${k} of round ${round}`).toBe(v);
        // kept to the microsecond (an integer in the object, not a boxed double)
        if (firstWriteAt < 0) expect(s.firstWriteAt).toBe(-1);
        else expect(Math.abs(s.firstWriteAt - firstWriteAt)).toBeLessThan(0.0006);
        for (let i = 0; i < 10; i++) expect(s.slot(i)).toBe(slots[i]);
      }
    }
  });

  it('the response is held strongly while open, weakly once lingering, and forgotten at drop; the request follows it', async () => {
    const req = { method: 'GET' } as http.IncomingMessage;
    const res = { req } as unknown as http.ServerResponse;
    const s = new StreamState(req, res, config, performance.now());
    expect(s.req).toBe(req);
    expect(s.res).toBe(res);
    s.holdWeakly();
    expect(s.res).toBe(res);
    s.drop();
    expect(s.res).toBe(null);
    expect(s.req).toBe(null);
    expect((res as unknown as Record<symbol, unknown>)[kState]).toBeUndefined();
    await sleep(0);
  });
});
