// N raw SSE clients in their own process: `node clients.mjs <port> <n> <path>`. Counts the
// occurrences of the marker BCAST across all sockets (handles a marker split across reads).
import net from 'node:net';

const [port, n, path] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4] ?? '/events'];
const MARK = 'BCAST';
let total = 0;
let ready = 0;
let expect = Infinity;
let t0 = 0;
const sockets = [];

function open() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let carry = '';
    let headers = false;
    s.setNoDelay(true);
    s.on('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`));
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
        process.send({ type: 'done', total, ms: performance.now() - t0 });
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
    expect = total + m.more;
    process.send({ type: 'armed' });
  } else if (m.cmd === 'exit') {
    for (const s of sockets) s.destroy();
    process.exit(0);
  }
});
