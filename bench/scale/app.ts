// The scale bench's server (run by bench/scale/run.mjs with `node --expose-gc --import tsx`): two routes that
// hold their streams open, /plain (no streamscope) and /inst (instrument() with the leak detectors on), and a
// /measure endpoint that reports heap after GC, the detectors' sweep cost, and /metrics scrape time and size
// with the event-loop delay p99 while scraping.
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { instrument, metricsHandler } from '../../src/index.js';
import { sweep } from '../../src/consumers/detectors/index.js';

const open = new Set<http.ServerResponse>();
function hold(res: http.ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  res.write(': open\n\n');
  open.add(res);
  res.on('close', () => open.delete(res));
}
const inst = instrument((_req: http.IncomingMessage, res: http.ServerResponse) => hold(res), {
  route: '/inst',
  stallAfterMs: 60_000,
  danglingAfterMs: 60_000,
});
const metrics = metricsHandler();

function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 4; i++) gc?.();
  return process.memoryUsage().heapUsed;
}

async function measure(): Promise<Record<string, number>> {
  const heap = heapAfterGc();
  // sweep: the detectors' timer runs it every 250 ms; here it is timed directly
  const sweeps: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    sweep();
    sweeps.push(performance.now() - t);
    await new Promise((r) => setImmediate(r));
  }
  sweeps.sort((a, b) => a - b);
  // /metrics: 20 scrapes over a real socket, 100 ms apart, with the event-loop delay recorded meanwhile
  const h = monitorEventLoopDelay({ resolution: 1 });
  const port = (server.address() as { port: number }).port;
  const times: number[] = [];
  let size = 0;
  h.enable();
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    size = await new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (r) => {
          let n = 0;
          r.on('data', (c: Buffer) => (n += c.length));
          r.on('end', () => resolve(n));
        })
        .on('error', reject);
    });
    times.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 100));
  }
  h.disable();
  times.sort((a, b) => a - b);
  return {
    open: open.size,
    heapUsed: heap,
    sweepMedianMs: sweeps[10] as number,
    sweepMaxMs: sweeps[19] as number,
    scrapeMedianMs: times[10] as number,
    scrapeMaxMs: times[19] as number,
    scrapeBytes: size,
    loopDelayP99Ms: h.percentile(99) / 1e6,
    loopDelayMaxMs: h.max / 1e6,
  };
}

const server = http.createServer((req, res) => {
  const p = (req.url ?? '/').split('?')[0];
  if (p === '/plain') return hold(res);
  if (p === '/inst') return void inst(req, res);
  if (p === '/metrics') return void metrics(req, res);
  if (p === '/measure') {
    void measure().then((m) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(m));
    });
    return;
  }
  res.statusCode = 404;
  res.end();
});
server.maxConnections = 30_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`READY ${(server.address() as { port: number }).port}\n`));
