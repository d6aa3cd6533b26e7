/**
 * node:cluster (PM2's cluster mode is the same thing): WORKERS processes share the streaming port; the
 * primary serves ONE /metrics for all of them (clusterMetricsHandler: prom-client's AggregatorRegistry,
 * counters and gauges summed, histograms merged). Every process runs the diag agent, so `diag ls` shows
 * the workers under their primary.
 *
 *   npm install && npm start
 *   curl -N http://127.0.0.1:<port>/ticks          # served by one worker or the other (X-Worker header)
 *   curl http://127.0.0.1:<metricsPort>/metrics     # the whole app: stream_started_total summed over workers
 *   npx streamscope ls
 *
 * PORT / METRICS_PORT choose the ports (default: free ones). The primary prints one JSON line
 * { port, metricsPort, workers: [pid…] } once every worker listens.
 */
import cluster from 'node:cluster';
import http from 'node:http';
import net from 'node:net';
import { clusterMetricsHandler, instrument, startAgent } from 'streamscope';

const WORKERS = Number(process.env.WORKERS ?? 2);
const TICKS = Number(process.env.TICKS ?? 5);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

startAgent();

if (cluster.isPrimary) {
  const port = Number(process.env.PORT ?? 0) || (await freePort());
  const metrics = clusterMetricsHandler();
  const metricsServer = http.createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] === '/metrics') void metrics(req, res);
    else {
      res.statusCode = 404;
      res.end('try /metrics\n');
    }
  });
  await new Promise((r) => metricsServer.listen(Number(process.env.METRICS_PORT ?? 0), '127.0.0.1', r));
  const workers = [];
  for (let i = 0; i < WORKERS; i++) workers.push(cluster.fork({ PORT: String(port) }));
  await Promise.all(workers.map((w) => new Promise((r) => w.once('listening', r))));
  console.log(JSON.stringify({ port, metricsPort: metricsServer.address().port, workers: workers.map((w) => w.process.pid) }));
  const stop = () => {
    for (const w of workers) w.process.kill('SIGTERM');
    metricsServer.close();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const ticks = instrument(
    (req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'X-Worker': String(process.pid) });
      let n = 0;
      const timer = setInterval(() => {
        res.write(`data: tick ${n}\n\n`);
        if (++n === TICKS) {
          clearInterval(timer);
          res.end();
        }
      }, 10);
      req.on('close', () => clearInterval(timer));
    },
    { route: '/ticks' },
  );
  const server = http.createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] === '/ticks') ticks(req, res);
    else {
      res.statusCode = 404;
      res.end('try /ticks\n');
    }
  });
  server.listen(Number(process.env.PORT), '127.0.0.1');
  process.on('SIGTERM', () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
