/**
 * The demo's own load, over real sockets to itself: readers of each route, slow readers,
 * clients that disconnect midway and clients that never read.
 */
import http from 'node:http';
import net from 'node:net';

export interface Load {
  started: number;
  stop(): void;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export function startLoad(port: number): Load {
  const state = { started: 0, stopped: false };
  const timers: NodeJS.Timeout[] = [];
  const sockets = new Set<net.Socket>();

  function get(path: string, onRes: (res: http.IncomingMessage, req: http.ClientRequest) => void): void {
    if (state.stopped) return;
    state.started++;
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => onRes(res, req));
    req.on('error', () => undefined);
  }

  function every(ms: number, fn: () => void): void {
    const t = setInterval(() => {
      if (!state.stopped) fn();
    }, ms);
    timers.push(t);
  }

  // Token streams: most read to the end, one in four leaves midway (the generator stops).
  every(150, () =>
    get('/tokens', (res, req) => {
      res.on('data', () => undefined);
      res.on('error', () => undefined);
      if (Math.random() < 0.25) setTimeout(() => req.destroy(), 200 + Math.random() * 800);
    }),
  );
  // Exports: fast readers and slow readers that pause and resume (they do drain).
  every(1500, () =>
    get('/export', (res) => {
      res.on('error', () => undefined);
      if (Math.random() < 0.5) {
        res.on('data', () => {
          res.pause();
          setTimeout(() => res.resume(), 20);
        });
      } else res.resume();
    }),
  );
  // Firehose: read slowly, so the server's ignored backpressure queues bytes.
  every(4000, () =>
    get('/firehose', (res) => {
      res.on('error', () => undefined);
      res.on('data', () => {
        res.pause();
        setTimeout(() => res.resume(), 50);
      });
    }),
  );
  // Leaky route: clients that leave after a second (zombie producer, dangling stream) …
  every(5000, () =>
    get('/leaky', (res, req) => {
      res.resume();
      res.on('error', () => undefined);
      setTimeout(() => req.destroy(), 1000);
    }),
  );
  // … and a client that connects and never reads (stalled write), then gives up after 40 s.
  function neverReads(): void {
    if (state.stopped) return;
    state.started++;
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(`GET /leaky HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      sock.pause();
    });
    sock.setNoDelay(true);
    sockets.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
    const t = setTimeout(() => sock.destroy(), 40_000);
    timers.push(t);
  }
  neverReads();
  every(15_000, neverReads);

  return {
    get started() {
      return state.started;
    },
    stop() {
      state.stopped = true;
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
      agent.destroy();
    },
  };
}
