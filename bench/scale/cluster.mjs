// The scale bench's cluster case (bench/scale/run.mjs): a node:cluster primary serving clusterMetricsHandler()
// and WORKERS workers, each with ROUTES instrumented routes that have each carried a stream (opened, a write,
// closed by its client), so every worker has every route's series. Prints `READY <port>` when all are set.
import cluster from 'node:cluster';
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const DIST = process.env.STREAMSCOPE_DIST;
const ROUTES = Number(process.env.ROUTES ?? 200);
const WORKERS = Number(process.env.WORKERS ?? 8);
const { clusterMetricsHandler, instrument } = await import(pathToFileURL(DIST).href);

if (cluster.isPrimary) {
  const metrics = clusterMetricsHandler();
  const server = http.createServer((req, res) => void metrics(req, res));
  let ready = 0;
  for (let i = 0; i < WORKERS; i++) {
    const w = cluster.fork();
    w.on('message', (m) => {
      if (m === 'warm' && ++ready === WORKERS) server.listen(0, '127.0.0.1', () => process.stdout.write(`READY ${server.address().port}\n`));
    });
  }
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill();
    process.exit(0);
  });
} else {
  const handlers = [];
  for (let k = 0; k < ROUTES; k++) {
    handlers.push(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write(': open\n\n');
        },
        { route: `/inst/${k}` },
      ),
    );
  }
  const server = http.createServer((req, res) => void handlers[Number(req.url.slice(6)) % ROUTES](req, res));
  server.listen(0, '127.0.0.1', async () => {
    const port = server.address().port;
    for (let k = 0; k < ROUTES; k += 20) {
      await Promise.all(
        Array.from({ length: Math.min(20, ROUTES - k) }, (_, j) =>
          new Promise((resolve) => {
            const req = http.get({ host: '127.0.0.1', port, path: `/inst/${k + j}`, agent: false }, (r) => {
              r.once('data', () => {
                req.destroy();
                resolve();
              });
            });
            req.on('error', resolve);
          }),
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 300));
    process.send('warm');
  });
}
