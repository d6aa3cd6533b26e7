// Cost of the progress check behind `stalled_write` (issue 11): run under tsx, in one process, since
// sweep() and the sampling statistics are internal. N idle SSE streams on real loopback sockets, then
// B more blocked by clients that never read; times the detectors' real sweep() with no stream
// blocked past a tenth of stallAfterMs (the walk alone) and with B blocked past it (one read of /proc/self/net/tcp{,6}
// per sweep, the inode of each blocked socket looked up once). Prints one JSON line.
//
//   node --import tsx bench/core/progress.mjs [idle=2000] [blocked=50] [sweeps=50]
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ss = await import(path.join(root, 'src', 'index.ts'));
const detectors = await import(path.join(root, 'src', 'consumers', 'detectors', 'index.ts'));
const progress = await import(path.join(root, 'src', 'consumers', 'detectors', 'progress.ts'));

const [idleN = 2000, blockedN = 50, sweeps = 50] = process.argv.slice(2).map(Number);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const chunk = Buffer.alloc(64 * 1024, 120);

function body(req, res) {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  if (req.url === '/idle') {
    res.write(': open\n\n');
  } else {
    const pump = () => {
      while (!res.destroyed && res.write(chunk)) {
        // keep writing until backpressure
      }
      if (!res.destroyed) res.once('drain', pump);
    };
    pump();
  }
  return new Promise((r) => res.on('close', r));
}
// Blocked streams are sampled from a tenth of stallAfterMs on (SAMPLE_FROM): 20 s here, so the "not yet"
// phase (timed at once) is quiet, and the sampling phase starts 10 s after they blocked (nothing is raised before 20 s).
const idleH = ss.instrument(body, { route: '/idle' });
const blockedH = ss.instrument(body, { route: '/blocked', stallAfterMs: 20_000 });
const handler = (req, res) => (req.url === '/idle' ? idleH(req, res) : blockedH(req, res));
const server = http.createServer(handler);
server.maxConnections = idleN + blockedN + 100;
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;

function connect(path, read) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' }, () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      if (read) sock.resume();
      else sock.pause();
      resolve(sock);
    });
    sock.on('error', reject);
  });
}

const socks = [];
for (let i = 0; i < idleN; i += 100) {
  const batch = [];
  for (let j = i; j < Math.min(idleN, i + 100); j++) batch.push(connect('/idle', true));
  socks.push(...(await Promise.all(batch)));
}
while (ss.streams().length < idleN) await sleep(20);

function time(n) {
  for (let i = 0; i < 10; i++) detectors.sweep();
  const xs = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    detectors.sweep();
    xs.push(performance.now() - t);
  }
  xs.sort((a, b) => a - b);
  return { n, median: xs[Math.floor(n / 2)], p95: xs[Math.floor(n * 0.95)], max: xs[n - 1] };
}

const walk = time(sweeps);
for (let i = 0; i < blockedN; i++) socks.push(await connect('/blocked', false));
const blockedStates = () => ss.streams().filter((s) => s.route === '/blocked' && s.blockedForMs > 0);
while (blockedStates().length < blockedN) await sleep(20);
const blockedNoSampling = time(sweeps);
const tracker = globalThis[Symbol.for('streamscope.tracker')];
const firstBlocked = Math.min(...[...tracker.open.values()].filter((s) => s.blockedSince >= 0).map((s) => s.blockedSince));
await sleep(Math.max(0, firstBlocked + 10_500 - performance.now()));
while (blockedStates().length < blockedN) await sleep(20);
const before = { ...progress.samplingStats };
// Sweeps spaced as in production (the proc reads complete in between, off the event loop): the time
// each sweep holds the event loop, plus the parsing of each completed read (on the loop, in its callback).
const xs = [];
const t0 = performance.now();
for (let i = 0; i < sweeps; i++) {
  const t = performance.now();
  detectors.sweep();
  xs.push(performance.now() - t);
  await sleep(100);
}
const elapsedS = (performance.now() - t0) / 1000;
xs.sort((a, b) => a - b);
const sampling = { n: sweeps, median: xs[Math.floor(sweeps / 2)], p95: xs[Math.floor(sweeps * 0.95)], max: xs[sweeps - 1] };
const after = progress.samplingStats;
let procBytes = 0;
let procLines = 0;
for (const f of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
  try {
    const t = fs.readFileSync(f, 'latin1');
    procBytes += t.length;
    procLines += t.split('\n').length - 2;
  } catch {
    /* none */
  }
}
const kernel = [...tracker.open.values()].filter((s) => progress.progressOf(s)?.kernel).length;
console.log(
  JSON.stringify({
    idle: idleN,
    blocked: blockedN,
    walk,
    blockedNoSampling,
    sampling,
    procReads: after.procReads - before.procReads,
    procReadsPerS: (after.procReads - before.procReads) / elapsedS,
    procMsPerRead: (after.procMs - before.procMs) / Math.max(1, after.procReads - before.procReads),
    parseMsPerRead: (after.parseMs - before.parseMs) / Math.max(1, after.procReads - before.procReads),
    sampledPerSweep: (after.sampled - before.sampled) / (after.sweeps - before.sweeps),
    kernelSampled: kernel,
    procBytes,
    procLines,
  }),
);
for (const s of socks) s.destroy();
server.closeAllConnections();
server.close();
process.exit(0);
