import type { IncomingMessage, ServerResponse } from 'node:http';
import { clusterRegistryClass, promClient } from './consumers/prom.js';

type Aggregator = { clusterMetrics(): Promise<string>; contentType: string };

/**
 * For the primary of a `node:cluster` app (and PM2's cluster mode, which is node:cluster): a `(req, res)`
 * handler that serves ONE `/metrics` for all workers, through the client's `ClusterRegistry` (prom-client:
 * `AggregatorRegistry`) — the application's client, the same copy the workers record into. Counters and gauges are summed across
 * workers (`stream_active_connections` is the streams open in the whole app), histograms merged bucket by
 * bucket. Workers need nothing more than their usual streamscope setup (their global register answers the
 * primary's request). Create it once, before or after forking; serve it on a port the workers do not share.
 */
export function clusterMetricsHandler(): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const prom = promClient();
  const aggregator = new (clusterRegistryClass(prom))() as unknown as Aggregator;
  return async (_req, res) => {
    try {
      const body = await aggregator.clusterMetrics();
      res.statusCode = 200;
      res.setHeader('Content-Type', aggregator.contentType);
      res.end(body);
    } catch (err) {
      // a worker that did not answer in time (prom-client waits 5 s) or failed: say so, as a scrape error
      res.statusCode = 500;
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end(`# cluster metrics collection failed: ${String((err as Error)?.message ?? err)}\n`);
    }
  };
}
