import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { get } from './helpers/http.js';
import { freePort, spawnNode, type Child } from './helpers/child.js';

/**
 * streamscope/register flushes on SIGTERM and SIGINT (docs/instrument.md, "Zero-code start"), without changing how
 * the app exits. The collector is a real OTLP/HTTP receiver (JSON encoding); the SDK's batch delay and metric
 * interval are a minute, so whatever arrives while the child lives was flushed by the signal.
 */

interface Receiver {
  url: string;
  spans: string[];
  metrics: string[];
  close(): Promise<void>;
}

async function receiver(answer = true): Promise<Receiver> {
  const spans: string[] = [];
  const metrics: string[] = [];
  const server = http.createServer((req, res) => {
    if (!answer) return; // a dead collector: takes the request, never answers
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, Array<Record<string, Array<Record<string, Array<{ name: string }>>>>>>;
        if (req.url === '/v1/traces') {
          for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push(s.name);
        } else if (req.url === '/v1/metrics') {
          for (const rm of body.resourceMetrics ?? []) for (const sm of rm.scopeMetrics ?? []) for (const m of sm.metrics ?? []) metrics.push(m.name);
        }
      } catch {
        /* not JSON: not counted */
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    metrics,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

const children: Child[] = [];
const receivers: Receiver[] = [];
afterEach(async () => {
  while (children.length) {
    const c = children.pop()!;
    if (c.proc.exitCode === null && c.proc.signalCode === null) await c.stop();
  }
  while (receivers.length) await receivers.pop()!.close();
});

function otelEnv(endpoint: string): NodeJS.ProcessEnv {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_BSP_SCHEDULE_DELAY: '60000',
    OTEL_METRIC_EXPORT_INTERVAL: '60000',
    OTEL_LOGS_EXPORTER: 'none',
    OTEL_SERVICE_NAME: 'signal-app',
    STREAMSCOPE_AGENT: 'off',
  };
}

function exited(child: Child): Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }> {
  return new Promise((resolve) => {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) return resolve({ code: child.proc.exitCode, signal: child.proc.signalCode, at: Date.now() });
    child.proc.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
}

async function start(mode: 'none' | 'own', env: NodeJS.ProcessEnv): Promise<Child> {
  const child = await spawnNode(['--import', 'streamscope/register', 'test/fixtures/signal-app.mjs', mode, '1500'], env);
  children.push(child);
  expect(child.hello.sdk).toBe(true);
  const port = child.hello.port as number;
  const r = await get(`http://127.0.0.1:${port}/events/1`);
  expect(r.body.toString()).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\n');
  return child;
}

describe('streamscope/register: SIGTERM and SIGINT flush the OpenTelemetry SDK it started', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`an app without a ${signal} handler: the stream's span and the metrics reach the collector, and the process still dies of ${signal}`, async () => {
      const rx = await receiver();
      receivers.push(rx);
      const child = await start('none', otelEnv(rx.url));
      const exit = exited(child);
      expect(rx.spans).toEqual([]); // nothing exported before the signal (batch delay: a minute)
      child.proc.kill(signal);
      const e = await exit;
      expect(e).toMatchObject({ code: null, signal });
      expect(rx.spans).toContain('stream /events/:id');
      expect(rx.metrics).toContain('stream_started_total');
      expect(child.stderr()).toBe('');
    }, 30_000);
  }

  it('an app with its own SIGTERM handler still decides when to exit (code 7, 1.5 s later); the spans are flushed meanwhile', async () => {
    const rx = await receiver();
    receivers.push(rx);
    const child = await start('own', otelEnv(rx.url));
    const exit = exited(child);
    let handled = 0;
    child.proc.stdout!.on('data', (c: Buffer) => {
      if (c.toString().includes('"signal":"SIGTERM"')) handled = Date.now();
    });
    const sent = Date.now();
    child.proc.kill('SIGTERM');
    const e = await exit;
    // process.exit() flushes nothing and the batch delay is a minute: what arrived was flushed on the signal
    expect(rx.spans).toContain('stream /events/:id');
    expect(e.code).toBe(7);
    expect(e.signal).toBe(null);
    expect(handled).toBeGreaterThan(0);
    // the app's chosen time, not earlier
    expect(e.at - sent).toBeGreaterThanOrEqual(1500);
    expect(rx.metrics).toContain('stream_started_total');
  }, 30_000);

  it('a dead collector does not keep the process alive: the flush is bounded and the process still dies of SIGTERM', async () => {
    const rx = await receiver(false);
    receivers.push(rx);
    // the exporters would wait ten minutes for an answer
    const env = { ...otelEnv(rx.url), OTEL_EXPORTER_OTLP_TIMEOUT: '600000', OTEL_BSP_EXPORT_TIMEOUT: '600000', OTEL_METRIC_EXPORT_INTERVAL: '600000', OTEL_METRIC_EXPORT_TIMEOUT: '600000' };
    const child = await start('none', env);
    const exit = exited(child);
    child.proc.kill('SIGTERM');
    expect(await exit).toMatchObject({ code: null, signal: 'SIGTERM' });
  }, 30_000);

  it('shutdown() called by the app under register: the SDK is flushed, the /metrics port closed, no listener of register left', async () => {
    const rx = await receiver();
    receivers.push(rx);
    const metricsPort = await freePort();
    // the agent on (its 'exit' listener must go too), @datadog/pprof not loaded (it adds an 'exit' listener of its own as it loads)
    const child = await start('none', { ...otelEnv(rx.url), STREAMSCOPE_AGENT: '', STREAMSCOPE_PPROF: 'off', STREAMSCOPE_METRICS_PORT: String(metricsPort), STREAMSCOPE_METRICS_HOST: '127.0.0.1' });
    const port = child.hello.port as number;
    expect((await get(`http://127.0.0.1:${metricsPort}/metrics`)).status).toBe(200);
    const r = JSON.parse((await get(`http://127.0.0.1:${port}/shutdown`)).body.toString()) as { listeners: Record<string, number> };
    expect(r.listeners).toEqual({ SIGTERM: 0, SIGINT: 0, beforeExit: 0, exit: 0 });
    expect(rx.spans).toContain('stream /events/:id');
    await expect(get(`http://127.0.0.1:${metricsPort}/metrics`)).rejects.toThrow(/ECONNREFUSED/);
    // and the app's own signal handling is Node's again: SIGTERM ends it at once
    const exit = exited(child);
    child.proc.kill('SIGTERM');
    expect(await exit).toMatchObject({ code: null, signal: 'SIGTERM' });
  }, 30_000);
});
