/**
 * The streamscope demo: a small streaming service with its own load, /metrics, a summary line every
 * few seconds and each leak finding as it happens. `npm start`; PORT to choose the port.
 *
 * Routes:
 *   /tokens   SSE token stream (an LLM-style generator that stops when the client leaves)
 *   /export   NDJSON export that honours backpressure (waits for 'drain')
 *   /firehose chunked stream that ignores backpressure (write() return value unchecked)
 *   /leaky    a producer that never stops: keeps writing after the client left, never settles
 *   /metrics  Prometheus text format
 */
import http from 'node:http';
import { instrument, metricsHandler, onFinding, startAgent, streams, type Finding } from '../src/index.js';
import { startLoad, type Load } from './demo-load.js';

const stallAfterMs = Number(process.env.DEMO_STALL_MS ?? 2000);
const danglingAfterMs = Number(process.env.DEMO_DANGLING_MS ?? 4000);
const durationS = Number(process.env.DEMO_DURATION_S ?? 0);
const opts = { stallAfterMs, danglingAfterMs, captureStacks: true };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits for 'drain' or 'close', whichever comes first, and removes both listeners. */
function drainOrClose(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

const WORDS = 'the quick brown fox jumps over a lazy dog while streams flow through sockets'.split(' ');

const tokens = instrument(async (req: http.IncomingMessage, res: http.ServerResponse) => {
  const ac = new AbortController();
  res.on('close', () => ac.abort());
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  const n = 20 + Math.floor(Math.random() * 60);
  for (let i = 0; i < n && !ac.signal.aborted; i++) {
    await sleep(15 + Math.random() * 40);
    if (ac.signal.aborted) break;
    res.write(`id: ${i}\ndata: ${JSON.stringify({ token: WORDS[i % WORDS.length] })}\n\n`);
  }
  if (!ac.signal.aborted) res.end('event: done\ndata: {}\n\n');
}, { ...opts, route: '/tokens', writeGaps: true }); // an LLM token stream: every gap between tokens (inter-token latency)

const exportRoute = instrument(async (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
  const rows = 2000 + Math.floor(Math.random() * 3000);
  for (let i = 0; i < rows; i++) {
    if (res.destroyed) return;
    const ok = res.write(JSON.stringify({ id: i, name: `row-${i}`, payload: 'x'.repeat(200) }) + '\n');
    if (!ok) await drainOrClose(res);
  }
  res.end();
}, { ...opts, route: '/export' });

const firehose = instrument((_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' });
  const chunk = Buffer.alloc(16 * 1024, 97);
  let sent = 0;
  const pump = (): void => {
    if (res.destroyed) return;
    for (let i = 0; i < 8; i++) res.write(chunk); // ignores the return value: this route is the bad example
    sent += 8 * chunk.length;
    if (sent >= 6 * 1024 * 1024) res.end();
    else setTimeout(pump, 5);
  };
  pump();
}, { ...opts, route: '/firehose' });

/** The leaky route: never listens to 'close', writes on a timer, and its promise never settles. */
const leaky = instrument(async (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  // 32 KiB of payload that each producer holds for its whole life: flat on the V8 heap on every Node version
  // ('y'.repeat() alone is a rope of a few small pieces on Node 24, so the leak would hardly show in a profile)
  const big = Buffer.alloc(32 * 1024, 'y').toString('latin1');
  let i = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      res.write(`data: ${i++} ${big}\n\n`);
      // A bounded leak, so the demo itself never grows without limit.
      if (i > 300) {
        clearInterval(timer);
        res.end();
        resolve();
      }
    }, 100);
  });
}, { ...opts, route: '/leaky', trackAsync: true });

const metrics = metricsHandler();

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/tokens') return void tokens(req, res);
  if (path === '/export') return void exportRoute(req, res);
  if (path === '/firehose') return void firehose(req, res);
  if (path === '/leaky') return void leaky(req, res);
  if (path === '/metrics') return void metrics(req, res);
  if (path === '/streams') {
    res.setHeader('Content-Type', 'application/json');
    return void res.end(JSON.stringify(streams()));
  }
  res.statusCode = 404;
  res.end('try /tokens /export /firehose /leaky /metrics /streams\n');
});

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

let load: Load | undefined;
let summary: NodeJS.Timeout | undefined;
let lastStarted = 0;
let lastAt = performance.now();
let findingsSeen = 0;

onFinding((f: Finding) => {
  findingsSeen++;
  const where = f.stack ? `\n    at ${f.stack.split('\n').find((l) => l.includes('examples/demo'))?.trim().replace(/^at /, '') ?? 'unknown'}` : '';
  process.stdout.write(
    `! ${f.kind.padEnd(16)} ${f.severity.padEnd(7)} ${f.method} ${f.route} stream #${f.streamId} (age ${(f.ageMs / 1000).toFixed(1)} s): ${f.detail}${where}\n`,
  );
});

const port = process.env.PORT === undefined ? 0 : Number(process.env.PORT);
server.listen(port, '127.0.0.1', () => {
  const addr = server.address() as { port: number };
  const base = `http://127.0.0.1:${addr.port}`;
  process.stdout.write(`streamscope demo listening on ${base}\n`);
  process.stdout.write(`metrics: ${base}/metrics   open streams: ${base}/streams   (Ctrl-C stops)\n`);
  const agent = startAgent();
  void agent.ready.then(() => {
    if (agent.path !== null) process.stdout.write(`diag: npm run diag -- top ${process.pid}   npm run diag -- capture ${process.pid} --heap   (agent at ${agent.path})\n`);
  });
  if (process.env.DEMO_NO_LOAD !== '1') load = startLoad(addr.port);
  summary = setInterval(() => {
    const open = streams().filter((s) => !s.clientClosed);
    const now = performance.now();
    const started = load?.started ?? 0;
    const rate = ((started - lastStarted) * 1000) / (now - lastAt);
    lastStarted = started;
    lastAt = now;
    const blocked = open.reduce((a, s) => a + s.blockedWrites, 0);
    const buffered = open.reduce((a, s) => a + s.bufferedBytes, 0);
    process.stdout.write(
      `active ${String(open.length).padStart(3)}  streams/s ${rate.toFixed(1).padStart(5)}  blocked writes ${String(blocked).padStart(6)}  buffered ${fmtBytes(buffered).padStart(9)}  findings ${findingsSeen}\n`,
    );
  }, 3000);
  summary.unref();
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  process.stdout.write('stopping…\n');
  if (summary) clearInterval(summary);
  load?.stop();
  server.close();
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 300).unref();
}
// Piped into `head` or a closed terminal: stop quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
});
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
if (durationS > 0) setTimeout(() => void stop(), durationS * 1000).unref();
