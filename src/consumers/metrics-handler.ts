import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MetricsRegistry } from '../types.js';
import { fastMetrics } from './exposition.js';
import { prerender, scraped } from './prerender.js';
import { promClient } from './prom.js';

/**
 * A `(req, res)` handler that serves the registry in the Prometheus text format: the text `registry.metrics()`
 * gives, with streamscope's own series rendered from cached label strings (src/consumers/exposition.ts), rendered
 * ahead of the scrapes where it can be (src/consumers/prerender.ts).
 */
export function metricsHandler(registry?: MetricsRegistry): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  // the first scrape's work (probe, first render of every series) done before it, off the request path
  setImmediate(() => {
    try {
      prerender((registry ??= promClient().register as MetricsRegistry));
    } catch {
      // no client installed: the first scrape says so
    }
  }).unref?.();
  return async (_req, res) => {
    try {
      const at = performance.now();
      // Default: the global register of the application's prom-client (see docs/metrics.md).
      registry ??= promClient().register as MetricsRegistry;
      // where the fast path does not apply, or fails (an app's metric that throws fails again below), the client's
      const fast = await fastMetrics(registry).catch(() => undefined);
      const body: Buffer | string = fast ?? (await registry.metrics());
      res.statusCode = 200;
      res.setHeader('Content-Type', registry.contentType);
      res.end(body);
      // what changes before the next scrape is rendered shortly before it (the interval learned from the scrapes)
      if (fast !== undefined) scraped(registry, at);
    } catch (err) {
      res.statusCode = 500;
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end(`# metrics collection failed: ${String((err as Error)?.message ?? err)}\n`);
    }
  };
}
