import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MetricsRegistry } from '../types.js';
import { promClient } from './prom.js';

/** A `(req, res)` handler that serves the registry in the Prometheus text format. */
export function metricsHandler(registry?: MetricsRegistry): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (_req, res) => {
    try {
      // Default: the global register of the application's prom-client (see docs/metrics.md).
      registry ??= promClient().register as MetricsRegistry;
      const body = await registry.metrics();
      res.statusCode = 200;
      res.setHeader('Content-Type', registry.contentType);
      res.end(body);
    } catch (err) {
      res.statusCode = 500;
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end(`# metrics collection failed: ${String((err as Error)?.message ?? err)}\n`);
    }
  };
}
