/**
 * Zero-code start: `node --import streamscope/register app.js` (or `--require` for CommonJS).
 * Observes every node:http response, serves /metrics on STREAMSCOPE_METRICS_PORT when set, and
 * starts the OpenTelemetry Node SDK when OTLP is configured and no tracer provider exists yet.
 * STREAMSCOPE_GUARD_* variables turn on the opt-in guards (docs/guards.md).
 * On SIGTERM and SIGINT it runs shutdown() (which flushes the SDK it started) without changing how the app
 * exits: an app that handles the signal still decides when; one that does not still dies of it, after the flush.
 */
import http from 'node:http';
import { ProxyTracerProvider, trace } from '@opentelemetry/api';
import { observeAll, kIgnore } from './observe.js';
import { metricsHandler } from './consumers/metrics-handler.js';
import { getTracker } from './core/tracker.js';
import { startAgent } from './consumers/agent/index.js';
import { guardOptionsFromEnv } from './consumers/guards.js';
import { kRegistered } from './core/symbols.js';
import { atShutdown } from './core/switch.js';
import { shutdown } from './shutdown.js';

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
  atShutdown(() => {
    server.close();
    server.closeAllConnections();
  }, 0);
}

function noProviderYet(): boolean {
  const p = trace.getTracerProvider();
  if (p instanceof ProxyTracerProvider) {
    const d = p.getDelegate();
    return d.constructor?.name === 'NoopTracerProvider';
  }
  return false;
}

/** How long a flush of the OpenTelemetry SDK may take at shutdown (a dead collector never holds the process longer). */
const FLUSH_TIMEOUT_MS = 5000;

/** `p`, or nothing after `ms`: the timer is cleared as soon as `p` settles, so it holds the process no longer. */
function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    void p.catch(() => undefined).then(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

async function startOtelSdk(): Promise<void> {
  try {
    const mod = (await import('@opentelemetry/sdk-node')) as { NodeSDK: new () => { start(): void; shutdown(): Promise<void> } };
    if (off) return;
    const sdk = new mod.NodeSDK();
    sdk.start();
    let stopped: Promise<void> | undefined;
    // Flushes the last spans (and metrics, with a metric reader) and stops the SDK, once: at shutdown() — which
    // SIGTERM/SIGINT run — and when the process ends on its own (as OpenTelemetry's own register does).
    const stop = (): Promise<void> => {
      process.removeListener('beforeExit', stop);
      stopped ??= bounded(sdk.shutdown(), FLUSH_TIMEOUT_MS);
      return stopped;
    };
    process.once('beforeExit', stop);
    atShutdown(stop, 40);
  } catch (err) {
    tracker.fault('register', err);
    process.stderr.write('streamscope: OTEL_* is set but @opentelemetry/sdk-node is not installed; spans are not exported (npm i @opentelemetry/sdk-node)\n');
  }
}

/** shutdown() ran: an SDK whose import was still under way is not started. */
let off = false;

function removeSignalListeners(): void {
  off = true;
  process.removeListener('SIGTERM', onSignal);
  process.removeListener('SIGINT', onSignal);
}
atShutdown(removeSignalListeners, 0);

/**
 * SIGTERM / SIGINT: shutdown() (which removes these listeners at once, and flushes the OpenTelemetry SDK,
 * bounded by FLUSH_TIMEOUT_MS), then, when no other listener is there for the signal, the signal is raised again,
 * so that the process ends by it as it would have without streamscope (same exit status). An app with its own
 * listener decides when to exit, as before; a second signal during the flush meets the default action (or the
 * app's listener) directly.
 */
function onSignal(signal: NodeJS.Signals): void {
  void bounded(shutdown(), FLUSH_TIMEOUT_MS + 1000).then(() => {
    removeSignalListeners();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
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
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  } catch (err) {
    tracker.fault('register', err);
  }
}
