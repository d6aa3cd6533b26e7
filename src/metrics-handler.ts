import type { IncomingMessage, ServerResponse } from 'node:http';
import { register as globalRegister, type Registry } from 'prom-client';

/** A `(req, res)` handler that serves the registry in the Prometheus text format. */
export function metricsHandler(registry: Registry = globalRegister): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (_req, res) => {
    try {
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
