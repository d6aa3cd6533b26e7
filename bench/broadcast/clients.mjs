// N raw clients in their own process: `node clients.mjs <port> <n> <path> [sse|ws] [localAddress]`. Counts the
// occurrences of the marker BCAST across all sockets (handles a marker split across reads). `ws` opens
// each socket with a WebSocket upgrade instead of an SSE GET; a server's WebSocket frames are not masked,
// so the marker is counted in the raw bytes the same way. run.mjs starts several of these processes so
// that the clients can take more than any server sends (the `ceiling` row says what they can take).
import net from 'node:net';

const [port, n, path, mode] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4] ?? '/events', process.argv[5] ?? 'sse'];
// Each client process connects from its own loopback address (127.0.0.x), so each has its own ephemeral ports: run
// after other benchmarks, 10,000 sockets from one address could find none free (EADDRNOTAVAIL) while the earlier
// runs' sockets sat in TIME_WAIT.
const localAddress = process.argv[6];
const MARK = 'BCAST';
let total = 0;
let ready = 0;
let expect = Infinity;
let t0 = 0;
let cpu0 = null;
const sockets = [];

const request =
  mode === 'ws'
    ? `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`
    : `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`;

function open() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) });
    let carry = '';
    let headers = false;
    s.setNoDelay(true);
    s.on('connect', () => s.write(request));
    s.on('data', (buf) => {
      const text = carry + buf.toString('latin1');
      if (!headers && text.includes('\r\n\r\n')) {
        headers = true;
        ready++;
        resolve(s);
      }
      let i = text.indexOf(MARK);
      while (i >= 0) {
        total++;
        i = text.indexOf(MARK, i + MARK.length);
      }
      carry = text.slice(-(MARK.length - 1));
      if (total >= expect) {
        const cpu = process.cpuUsage(cpu0);
        process.send({ type: 'done', total, ms: performance.now() - t0, cpuUs: cpu.user + cpu.system });
        expect = Infinity;
      }
    });
    s.on('error', reject);
    sockets.push(s);
  });
}

for (let i = 0; i < n; i += 500) {
  await Promise.all(Array.from({ length: Math.min(500, n - i) }, open));
}
process.send({ type: 'connected', ready });
process.on('message', (m) => {
  if (m.cmd === 'expect') {
    t0 = performance.now();
    cpu0 = process.cpuUsage();
    expect = total + m.more;
    process.send({ type: 'armed' });
  } else if (m.cmd === 'exit') {
    for (const s of sockets) s.destroy();
    process.exit(0);
  }
});
