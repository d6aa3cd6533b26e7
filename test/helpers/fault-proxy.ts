import net from 'node:net';

/**
 * A TCP proxy for event streams that injects one fault on demand, in the bytes going to the client:
 * `flip(marker)` changes one byte inside the next occurrence of `marker` (its first byte, XOR 1), and
 * `cut(marker)` forwards the bytes up to the middle of the next occurrence and then drops both sides — a
 * connection lost mid-event. Connections go round-robin over `backends`, so a reconnect lands on the next
 * instance. Each fault fires once. `log` has one line per connection (backend, bytes, what was done).
 * Event-stream connections (a request line with `/events`) take turns of their own, so a page's other requests
 * (the page, its script, a favicon) do not decide where a resume lands.
 */
export interface FaultProxy {
  port: number;
  url: string;
  /** Connections made to each backend. */
  connections: number[];
  log: string[];
  flip(marker: string): Promise<void>;
  cut(marker: string): Promise<void>;
  close(): Promise<void>;
}

export async function faultProxy(backends: number[]): Promise<FaultProxy> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const connections = backends.map(() => 0);
  const log: string[] = [];
  let armed: { kind: 'flip' | 'cut'; marker: Buffer; done: () => void } | null = null;
  let nextOther = 0;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => client.destroy());
    client.once('data', (head: Buffer) => {
      const events = /^[A-Z]+ \/events[?\s]/.test(head.toString('latin1', 0, 64));
      proxied(client, head, events ? next++ : nextOther++);
    });
  });
  const proxied = (client: net.Socket, head: Buffer, n: number): void => {
    const i = n % backends.length;
    connections[i]!++;
    const upstream = net.connect({ port: backends[i]!, host: '127.0.0.1' });
    upstream.write(head);
    sockets.add(upstream);
    let down = 0;
    let note = '';
    let closed = false;
    const done = (): void => {
      if (!closed) {
        closed = true;
        log.push(`c${n} -> backend ${i}: ${down} bytes down${note}`);
      }
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', done);
    upstream.on('error', done);
    client.on('close', done);
    upstream.on('close', done);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      const a = armed;
      const at = a === null ? -1 : chunk.indexOf(a.marker);
      if (a === null || at < 0) {
        down += chunk.length;
        client.write(chunk);
        return;
      }
      armed = null;
      if (a.kind === 'flip') {
        const copy = Buffer.from(chunk);
        copy[at] = copy[at]! ^ 1;
        note += ` flipped byte ${down + at}`;
        down += copy.length;
        client.write(copy);
        a.done();
        return;
      }
      const keep = chunk.subarray(0, at + (a.marker.length >> 1));
      note += ` cut at byte ${down + keep.length}, mid-event`;
      down += keep.length;
      upstream.pause();
      client.write(keep, () => {
        client.destroy();
        upstream.destroy();
        a.done();
      });
    });
    upstream.on('end', () => client.end());
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const arm = (kind: 'flip' | 'cut', marker: string): Promise<void> =>
    new Promise((resolve) => {
      armed = { kind, marker: Buffer.from(marker), done: resolve };
    });
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    connections,
    log,
    flip: (m) => arm('flip', m),
    cut: (m) => arm('cut', m),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
