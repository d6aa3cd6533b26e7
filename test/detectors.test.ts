import { describe, expect, it } from 'vitest';
import http from 'node:http';
import { Registry } from 'prom-client';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { instrument, onFinding, streams, recentFindings, type Finding } from '../src/index.js';
import { get, getAndAbort, neverReadingClient, pumpUntilClosed, scrape, sleep, sum, until } from './helpers/http.js';
import { testScope } from './helpers/scope.js';
import { stallBound } from './helpers/stall-bound.js';

const STALL = 300;
const DANGLE = 500;
const { cleanup, serve, collect } = testScope();

const opts = (registry: Registry, route: string, extra: object = {}) => ({ registry, route, stallAfterMs: STALL, danglingAfterMs: DANGLE, ...extra });

describe('stalled_write', () => {
  it('is raised once, within the threshold plus one second, for a client that stops reading', async () => {
    const registry = new Registry();
    const exporter = new InMemorySpanExporter();
    const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer('t');
    const seen = collect('/stall');
    const within = await stallBound(STALL);
    let firstBlockedAt = 0;
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
          const chunk = Buffer.alloc(256 * 1024, 120);
          const t = setInterval(() => {
            if (res.destroyed) return clearInterval(t);
            if (!res.write(chunk) && firstBlockedAt === 0) firstBlockedAt = Date.now();
          }, 5);
        },
        opts(registry, '/stall', { tracer }),
      ),
    );
    const sock = await neverReadingClient(srv.port, '/stall');
    cleanup.push(() => sock.destroy());
    await until(() => seen.length > 0, 'a stalled_write finding', 10_000);
    const f = seen[0]!;
    expect(f).toMatchObject({ kind: 'stalled_write', severity: 'warning', route: '/stall', method: 'GET' });
    expect(typeof f.streamId).toBe('number');
    expect(f.ageMs).toBeGreaterThanOrEqual(STALL);
    expect(f.detail).toMatch(/waited \d+ ms for drain/);
    // the blocked episode that the finding reports is at most threshold + 1 s old when raised (the kernel's TCP
    // table read fast; on a host with a large one, five reads later: test/helpers/stall-bound.ts)
    const waited = Number(/waited (\d+) ms/.exec(f.detail)![1]);
    expect(waited).toBeGreaterThanOrEqual(STALL); // more than STALL, printed rounded to the ms
    const bound = await within.bound();
    expect(waited, `read of the TCP table ${within.readMs.toFixed(0)} ms`).toBeLessThanOrEqual(bound);
    expect(streams().find((s) => s.id === f.streamId)?.findings).toEqual(['stalled_write']);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_leaks_total', { route: '/stall', kind: 'stalled_write' })).toBe(1);
    // the gauge is as of the sweep: a finding raised between sweeps (from a kernel sample) is in it from the next one
    await until(async () => sum(await scrape(registry), 'stream_stalled', { route: '/stall' }) === 1, 'stream_stalled 1 from the next sweep');
    await sleep(STALL * 2);
    expect(seen).toHaveLength(1); // once per stream and kind
    expect(recentFindings().some((r) => r.streamId === f.streamId && r.kind === 'stalled_write')).toBe(true);
    sock.destroy();
    await until(() => exporter.getFinishedSpans().length === 1, 'span to end');
    const span = exporter.getFinishedSpans()[0]!;
    expect(span.events.find((e) => e.name === 'stream.finding')?.attributes?.['finding.kind']).toBe('stalled_write');
    await until(async () => sum(await scrape(registry), 'stream_stalled', { route: '/stall' }) === 0, 'stalled gauge back to 0');
  });
});

describe.runIf(process.platform === 'linux')('stalled_write from a kernel sample', () => {
  it('is raised as soon as the deciding read of the proc table is in, not at the next sweep', async () => {
    const registry = new Registry();
    const stacks: string[] = [];
    const limit = Error.stackTraceLimit;
    cleanup.push(() => (Error.stackTraceLimit = limit));
    Error.stackTraceLimit = 50;
    cleanup.push(onFinding((f) => f.route === '/stall-kernel' && f.kind === 'stalled_write' && stacks.push(new Error().stack ?? '')));
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
          return pumpUntilClosed(res);
        },
        opts(registry, '/stall-kernel'),
      ),
    );
    const sock = await neverReadingClient(srv.port, '/stall-kernel');
    cleanup.push(() => sock.destroy());
    await until(() => stacks.length > 0, 'a stalled_write finding', 10_000);
    // raised from the read's callback (the detectors' checkSampled), not from the 250 ms sweep
    expect(stacks[0]).toMatch(/checkSampled/);
    // (a frame of a function named sweep: the files' paths may contain the word, a worktree's name for one)
    expect(stacks[0]).not.toMatch(/ at (?:\S+\.)?sweep /);
  });
});

describe('zombie_producer and dangling_stream', () => {
  it('a client disconnects while a setInterval keeps writing: both kinds, once each', async () => {
    const registry = new Registry();
    const seen = collect('/zombie');
    let intervals = 0;
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          intervals++;
          const t = setInterval(() => res.write('data: token\n\n'), 20);
          cleanup.push(() => clearInterval(t));
        },
        opts(registry, '/zombie'),
      ),
    );
    await getAndAbort(srv.url, 10);
    const left = Date.now();
    await until(() => seen.some((f) => f.kind === 'dangling_stream'), 'dangling_stream', 10_000);
    expect(Date.now() - left).toBeLessThanOrEqual(DANGLE + 1000 + 250);
    const kinds = seen.map((f) => f.kind).sort();
    expect(kinds).toEqual(['dangling_stream', 'zombie_producer']);
    const zombie = seen.find((f) => f.kind === 'zombie_producer')!;
    expect(zombie.severity).toBe('error');
    expect(zombie.detail).toMatch(/writes arrived after the client went away/);
    // still listed, flagged, with clientClosed
    const snap = streams().find((s) => s.id === zombie.streamId)!;
    expect(snap.clientClosed).toBe(true);
    expect(snap.findings.sort()).toEqual(['dangling_stream', 'zombie_producer']);
    expect(snap.writesAfterClose).toBeGreaterThan(3);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_leaks_total', { route: '/zombie', kind: 'zombie_producer' })).toBe(1);
    expect(sum(samples, 'stream_leaks_total', { route: '/zombie', kind: 'dangling_stream' })).toBe(1);
    expect(sum(samples, 'stream_writes_after_close_total', { route: '/zombie' })).toBeGreaterThan(3);
    expect(sum(samples, 'write_blocked_total', { route: '/zombie' })).toBe(0); // never backpressure
    expect(intervals).toBe(1);
  });

  it('a handler that never ends after the client left: dangling_stream, and it lingers in streams()', async () => {
    const registry = new Registry();
    const seen = collect('/hang');
    let release!: () => void;
    const forever = new Promise<void>((r) => (release = r));
    cleanup.push(() => release());
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: first\n\n');
          await forever; // an upstream call that never answers, and nobody listens to 'close'
        },
        opts(registry, '/hang', { captureStacks: true }),
      ),
    );
    await getAndAbort(srv.url, 5);
    await until(() => seen.length > 0, 'dangling_stream', 10_000);
    expect(seen.map((f) => f.kind)).toEqual(['dangling_stream']);
    expect(seen[0]!.detail).toMatch(/handler has not settled/);
    // captureStacks: the finding points at the user's code (this file)
    expect(seen[0]!.stack).toMatch(/detectors\.test\.ts/);
    expect(streams().some((s) => s.id === seen[0]!.streamId && s.clientClosed)).toBe(true);
    release();
    await until(() => !streams().some((s) => s.id === seen[0]!.streamId), 'release once the handler settles');
  });
});

describe('dangling_async (trackAsync)', () => {
  it('reports timers created by the handler that outlive the stream, with the stack where they were created', async () => {
    const registry = new Registry();
    const seen = collect('/async');
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: hello\n\n');
          // a poller that is never cleared and never writes
          const poll = setInterval(function pollUpstream() {}, 50);
          cleanup.push(() => clearInterval(poll));
          setTimeout(() => res.end(), 20);
        },
        opts(registry, '/async', { trackAsync: true }),
      ),
    );
    await get(srv.url);
    await until(() => seen.some((f) => f.kind === 'dangling_async'), 'dangling_async', 10_000);
    const f = seen.find((x) => x.kind === 'dangling_async')!;
    expect(f.detail).toMatch(/1 Timeout/);
    expect(f.stack).toMatch(/detectors\.test\.ts/);
    expect(seen.filter((x) => x.kind === 'dangling_async')).toHaveLength(1);
  });

  it('raises nothing when the handler clears its timers at close', async () => {
    const registry = new Registry();
    const seen = collect('/tidy');
    const srv = await serve(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          const t = setInterval(() => res.write('data: x\n\n'), 10);
          res.on('close', () => clearInterval(t));
        },
        opts(registry, '/tidy', { trackAsync: true }),
      ),
    );
    await getAndAbort(srv.url, 30);
    await sleep(DANGLE + 800);
    expect(seen).toEqual([]);
  });
});

describe('no false alarms on healthy traffic', () => {
  it('a slow client that does drain, a heartbeating SSE stream, a stream that ends just after the threshold, and producers that stop at once', async () => {
    const registry = new Registry();
    const found: Finding[] = [];
    cleanup.push(onFinding((f) => found.push(f)));
    const srv = await serve(
      instrument(
        async (req, res) => {
          const ac = new AbortController();
          res.on('close', () => ac.abort());
          if (req.url === '/slow-drain') {
            res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
            const chunk = Buffer.alloc(64 * 1024, 100);
            for (let i = 0; i < 60 && !ac.signal.aborted; i++) {
              if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
            }
            return void res.end();
          }
          if (req.url === '/heartbeat') {
            res.writeHead(200, { 'Content-Type': 'text/event-stream' });
            // lives 8x the dangling threshold, a comment every 100 ms
            for (let i = 0; i < 40 && !ac.signal.aborted; i++) {
              res.write(': heartbeat\n\n');
              await sleep(100);
            }
            return void res.end();
          }
          if (req.url === '/just-after') {
            res.writeHead(200, { 'Content-Type': 'text/event-stream' });
            res.write('data: start\n\n');
            await sleep(DANGLE + 100);
            return void res.end('data: end\n\n');
          }
          // /stops-at-once: listens to the abort signal and stops
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          while (!ac.signal.aborted) {
            res.write('data: token\n\n');
            await sleep(10);
          }
        },
        opts(registry, '/healthy', { trackAsync: true }),
      ),
    );
    const slowReader = new Promise<void>((resolve) => {
      http.get(srv.url + '/slow-drain', { agent: false }, (res) => {
        res.on('data', () => {
          res.pause();
          setTimeout(() => res.resume(), 15); // slow, but it reads: every blocked write drains well within STALL
        });
        res.on('end', resolve);
      });
    });
    await Promise.all([
      slowReader,
      get(srv.url + '/heartbeat'),
      get(srv.url + '/just-after'),
      getAndAbort(srv.url + '/stops-at-once', 50),
      getAndAbort(srv.url + '/stops-at-once', 200),
    ]);
    await sleep(DANGLE + 800);
    expect(found).toEqual([]);
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_leaks_total')).toBe(0);
    expect(sum(samples, 'stream_started_total')).toBe(5);
    expect(sum(samples, 'stream_active_connections')).toBe(0);
  });
});
