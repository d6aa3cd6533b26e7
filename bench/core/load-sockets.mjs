// Load child: many raw TCP clients that GET an SSE route and count the bytes they receive.
// Raw sockets, not node:http, so the client does no chunk parsing and stays far cheaper than the
// server it measures. Bounded: it connects at most BENCH_CONNS sockets and exits after BENCH_MAX_S.
//
// IPC: sends {type:'connected', open, failed, errors}; answers {type:'start'|'stop'|'close'}.
import net from 'node:net';

const port = Number(process.env.BENCH_PORT);
const path = process.env.BENCH_PATH ?? '/';
const conns = Number(process.env.BENCH_CONNS ?? 200);
const inflightMax = Number(process.env.BENCH_INFLIGHT ?? 200);
const maxS = Number(process.env.BENCH_MAX_S ?? 120);

setTimeout(() => process.exit(3), maxS * 1000).unref();

const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`);
const sockets = [];
let total = 0;
let open = 0;
let failed = 0;
let started = 0;
let inflight = 0;
const errors = {};
let stopOpening = false;
let reported = false;

function onData(chunk) {
  total += chunk.length;
  if (this.firstData) {
    this.firstData = false;
    open++;
    inflight--;
    pump();
  }
}

function onError(err) {
  errors[err.code ?? err.message] = (errors[err.code ?? err.message] ?? 0) + 1;
  if (this.firstData) {
    this.firstData = false;
    failed++;
    inflight--;
    // Out of descriptors or ports: stop at the largest count that works, and say so.
    if (err.code === 'EMFILE' || err.code === 'EADDRNOTAVAIL' || err.code === 'ENFILE') stopOpening = true;
    pump();
  }
}

function onClose() {
  // Closed by the server before it answered (no error event): count it as failed, keep going.
  if (this.firstData) onError.call(this, Object.assign(new Error('closed before the response'), { code: 'ECLOSED' }));
}

function pump() {
  while (!stopOpening && started < conns && inflight < inflightMax) {
    started++;
    inflight++;
    const s = net.connect({ host: '127.0.0.1', port });
    s.firstData = true;
    s.setNoDelay(true);
    s.on('data', onData);
    s.on('error', onError);
    s.on('close', onClose);
    s.write(request);
    sockets.push(s);
  }
  if (!reported && inflight === 0 && (started === conns || stopOpening)) {
    reported = true;
    process.send({ type: 'connected', open, failed, errors });
  }
}

let mark = { bytes: 0, t: 0 };
process.on('message', (msg) => {
  if (msg.type === 'start') {
    mark = { bytes: total, t: performance.now() };
    process.send({ id: msg.id });
  } else if (msg.type === 'stop') {
    process.send({ id: msg.id, bytes: total - mark.bytes, ms: performance.now() - mark.t, errors });
  } else if (msg.type === 'close') {
    for (const s of sockets) s.destroy();
    process.send({ id: msg.id });
    setTimeout(() => process.exit(0), 50);
  }
});
process.on('disconnect', () => process.exit(0));
pump();
