import { afterAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { resolve } from 'node:path';
import { context, trace, SpanStatusCode } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { MAX_SPAN_EVENTS } from '../src/consumers/tracing.js';
import { get, getAndAbort, sleep, startServer, until } from './helpers/http.js';

const run = promisify(execFile);
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer('test');
const cm = new AsyncLocalStorageContextManager().enable();
context.setGlobalContextManager(cm);
afterAll(() => {
  context.disable();
});

describe('one span per stream', () => {
  it('has the contract name, attributes and events', async () => {
    exporter.reset();
    const srv = await startServer(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          for (let i = 0; i < 3; i++) {
            res.write(`data: ${i}\n\n`);
            await sleep(2);
          }
          res.end();
        },
        { tracer, registry: new Registry(), route: '/events' },
      ),
    );
    const r = await get(srv.url);
    await until(() => exporter.getFinishedSpans().length === 1, 'span to end');
    await srv.close();
    const [span] = exporter.getFinishedSpans();
    expect(span!.name).toBe('stream /events');
    expect(span!.attributes).toMatchObject({
      'stream.route': '/events',
      'stream.outcome': 'completed',
      'stream.bytes': r.body.length,
      'stream.writes': 3,
      'stream.blocked_writes': 0,
    });
    expect(typeof span!.attributes['stream.first_write_ms']).toBe('number');
    expect(span!.events.map((e) => e.name)).toEqual(['stream.first_write']);
    expect(span!.parentSpanContext).toBeUndefined();
  });

  it('is a child of the active server span, and records client close', async () => {
    exporter.reset();
    const h = instrument(
      (_req: http.IncomingMessage, res: http.ServerResponse) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        const t = setInterval(() => res.write('data: x\n\n'), 3);
        res.on('close', () => clearInterval(t));
      },
      { tracer, registry: new Registry(), route: '/child' },
    );
    const srv = await startServer((req, res) => {
      const server = tracer.startSpan('GET /child');
      res.on('close', () => server.end());
      context.with(trace.setSpan(context.active(), server), () => h(req, res));
    });
    await getAndAbort(srv.url, 20);
    await until(() => exporter.getFinishedSpans().length === 2, 'both spans to end');
    await srv.close();
    const spans = exporter.getFinishedSpans();
    const stream = spans.find((s) => s.name === 'stream /child')!;
    const parent = spans.find((s) => s.name === 'GET /child')!;
    expect(stream.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(stream.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(stream.attributes['stream.outcome']).toBe('client_aborted');
    expect(stream.events.map((e) => e.name)).toContain('stream.client_closed');
  });

  it('records blocked writes and drains, and marks error outcomes', async () => {
    exporter.reset();
    const srv = await startServer(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
          const big = Buffer.alloc(1024 * 1024, 65);
          if (!res.write(big)) await new Promise((r) => res.once('drain', r));
          res.destroy(new Error('upstream died'));
        },
        { tracer, registry: new Registry(), route: '/err' },
      ),
    );
    await get(srv.url).catch(() => undefined);
    await until(() => exporter.getFinishedSpans().length === 1, 'span to end');
    await srv.close();
    const [span] = exporter.getFinishedSpans();
    expect(span!.attributes['stream.outcome']).toBe('error');
    expect(span!.status.code).toBe(SpanStatusCode.ERROR);
    const names = span!.events.map((e) => e.name);
    expect(names).toContain('stream.write_blocked');
    expect(names).toContain('stream.drain');
    expect(span!.attributes['stream.blocked_writes']).toBeGreaterThanOrEqual(1);
  });

  it('a stream with hundreds of backpressure episodes keeps its first write and caps its events, counting the rest', async () => {
    exporter.reset();
    const EPISODES = 220;
    let episodes = 0;
    const srv = await startServer(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
          const chunk = Buffer.alloc(256 * 1024, 66);
          for (let i = 0; episodes < EPISODES && i < 20_000; i++) {
            if (!res.write(chunk)) {
              episodes++;
              await new Promise((r) => res.once('drain', r));
            }
          }
          res.end();
        },
        { tracer, registry: new Registry(), route: '/long' },
      ),
    );
    // a client that takes a pause now and then, so the server meets backpressure often
    await new Promise<void>((resolve, reject) => {
      http.get(srv.url, { agent: false }, (res) => {
        res.on('data', () => {
          res.pause();
          setTimeout(() => res.resume(), 1);
        });
        res.on('end', resolve);
        res.on('error', reject);
      }).on('error', reject);
    });
    await until(() => exporter.getFinishedSpans().length === 1, 'span to end');
    await srv.close();
    expect(episodes).toBe(EPISODES);
    const [span] = exporter.getFinishedSpans();
    const names = span!.events.map((e) => e.name);
    expect(names.length).toBeLessThanOrEqual(MAX_SPAN_EVENTS);
    expect(span!.droppedEventsCount).toBe(0); // the SDK (128 by default) dropped nothing: streamscope stopped first
    expect(names[0]).toBe('stream.first_write');
    expect(typeof span!.attributes['stream.first_write_ms']).toBe('number');
    expect(span!.attributes['stream.blocked_writes']).toBe(EPISODES);
    // episodes are recorded whole: every write_blocked event has its drain right after it
    const blocked = names.filter((n) => n === 'stream.write_blocked').length;
    expect(names.filter((n) => n === 'stream.drain').length).toBe(blocked);
    names.forEach((n, i) => {
      if (n === 'stream.write_blocked') expect(names[i + 1]).toBe('stream.drain');
    });
    expect(blocked).toBeGreaterThan(0);
    // what was left out is counted: every event the stream had, minus those recorded
    expect(span!.attributes['stream.events_dropped']).toBe(1 + 2 * EPISODES - names.length);
  }, 60_000);

  it('a short stream drops no event', async () => {
    exporter.reset();
    const srv = await startServer(instrument(async (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: 1\n\n');
      await sleep(5);
      res.end();
    }, { tracer, registry: new Registry(), route: '/short' }));
    await get(srv.url);
    await until(() => exporter.getFinishedSpans().length === 1, 'span to end');
    await srv.close();
    expect(exporter.getFinishedSpans()[0]!.attributes['stream.events_dropped']).toBe(0);
  });

  it('under @opentelemetry/instrumentation-http, the stream span is a child of the HTTP server span', async () => {
    const root = resolve(import.meta.dirname, '..');
    const { stdout } = await run(process.execPath, [resolve(root, 'test/fixtures/otel-http-server.cjs'), resolve(root, 'dist/cjs/index.cjs')], {
      cwd: root,
      timeout: 30_000,
    });
    const spans = JSON.parse(stdout.trim().split('\n').pop()!) as Array<{
      name: string;
      kind: number;
      traceId: string;
      spanId: string;
      parentSpanId?: string;
      attributes: Record<string, unknown>;
      events: string[];
    }>;
    const stream = spans.filter((s) => s.name === 'stream /events');
    expect(stream).toHaveLength(1);
    const serverSpan = spans.find((s) => s.kind === 1 /* SERVER */)!;
    expect(serverSpan).toBeDefined();
    expect(stream[0]!.parentSpanId).toBe(serverSpan.spanId);
    expect(stream[0]!.traceId).toBe(serverSpan.traceId);
    expect(stream[0]!.attributes['stream.writes']).toBe(4);
    expect(stream[0]!.events).toContain('stream.first_write');
  });

  it('a finding raised after the span ended lands on a linked span in the same trace', async () => {
    exporter.reset();
    const srv = await startServer(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          // a synchronous handler whose timer never stops: it returns at once, then writes on after close
          const t = setInterval(() => res.write('data: x\n\n'), 10);
          setTimeout(() => clearInterval(t), 1500).unref();
        },
        { tracer, registry: new Registry(), route: '/late', danglingAfterMs: 5000 },
      ),
    );
    await getAndAbort(srv.url, 5);
    await until(() => exporter.getFinishedSpans().some((s) => s.name === 'stream.finding /late'), 'the finding span', 10_000);
    await srv.close();
    const spans = exporter.getFinishedSpans();
    const stream = spans.find((s) => s.name === 'stream /late')!;
    const finding = spans.find((s) => s.name === 'stream.finding /late')!;
    expect(finding.spanContext().traceId).toBe(stream.spanContext().traceId);
    expect(finding.links[0]!.context.spanId).toBe(stream.spanContext().spanId);
    expect(finding.events[0]!.attributes!['finding.kind']).toBe('zombie_producer');
  });
});
