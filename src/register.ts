/**
 * Zero-code start: `node --import streamscope/register app.js` (or `--require` for CommonJS).
 * Observes every node:http response, serves /metrics on STREAMSCOPE_METRICS_PORT when set, and
 * starts the OpenTelemetry Node SDK when OTLP is configured and no tracer provider exists yet.
 * STREAMSCOPE_GUARD_* variables turn on the opt-in guards (docs/guards.md).
 */
import http from 'node:http';
import { ProxyTracerProvider, trace } from '@opentelemetry/api';
import { observeAll, kIgnore } from './observe.js';
import { metricsHandler } from './consumers/metrics-handler.js';
import { getTracker } from './core/tracker.js';
import { startAgent } from './consumers/agent/index.js';
import { guardOptionsFromEnv } from './consumers/guards.js';
import { kRegistered } from './core/symbols.js';

const tracker = getTracker();
const g = globalThis as unknown as Record<symbol, boolean | undefined>;

function startMetricsServer(portText: string): void {
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`streamscope: STREAMSCOPE_METRICS_PORT must be a port number, got "${portText}"; /metrics not served\n`);
    return;
  }
  const handler = metricsHandler();
  const server = http.createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] === '/metrics') void handler(req, res);
    else {
      res.statusCode = 404;
      res.end('not found: try /metrics\n');
    }
  });
  (server as unknown as Record<symbol, boolean>)[kIgnore] = true;
  server.on('error', (err) => {
    tracker.fault('register', err);
    process.stderr.write(`streamscope: cannot serve /metrics on port ${port}: ${(err as Error).message}\n`);
  });
  server.listen(port, process.env.STREAMSCOPE_METRICS_HOST ?? '0.0.0.0');
  server.unref();
}

function noProviderYet(): boolean {
  const p = trace.getTracerProvider();
  if (p instanceof ProxyTracerProvider) {
    const d = p.getDelegate();
    return d.constructor?.name === 'NoopTracerProvider';
  }
  return false;
}

async function startOtelSdk(): Promise<void> {
  try {
    const mod = (await import('@opentelemetry/sdk-node')) as { NodeSDK: new () => { start(): void; shutdown(): Promise<void> } };
    const sdk = new mod.NodeSDK();
    sdk.start();
    const stop = (): void => {
      void sdk.shutdown().catch(() => undefined);
    };
    process.once('beforeExit', stop);
  } catch (err) {
    tracker.fault('register', err);
    process.stderr.write('streamscope: OTEL_* is set but @opentelemetry/sdk-node is not installed; spans are not exported (npm i @opentelemetry/sdk-node)\n');
  }
}

if (g[kRegistered] !== true) {
  g[kRegistered] = true;
  try {
    // Opt-in guards from STREAMSCOPE_GUARD_* (docs/guards.md); a bad value is one line and leaves that guard off.
    const guards = guardOptionsFromEnv(process.env);
    for (const line of guards.errors) process.stderr.write(line + '\n');
    observeAll(guards.options);
    startAgent();
    const port = process.env.STREAMSCOPE_METRICS_PORT;
    if (port !== undefined && port !== '') startMetricsServer(port);
    if ((process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_TRACES_EXPORTER) && noProviderYet()) void startOtelSdk();
  } catch (err) {
    tracker.fault('register', err);
  }
}
