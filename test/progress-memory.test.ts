import fs from 'node:fs';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { Progress, considerForSampling, sampleCandidates, samplingStats, setOnSampled } from '../src/consumers/detectors/progress.js';
import type { StreamState } from '../src/core/stream-state.js';

/**
 * A proc table read holds a bounded amount of memory whatever the table's size. The kernel prints
 * /proc/self/net/tcp a page per read(); fs.readFile (the size of a proc file is unknown to it) kept a fresh 64 KiB
 * buffer per read until the end: 16 times the table. Under CPU contention a read of a large table took seconds and
 * the guards' tarball test saw 75-98 MiB of heap+external in the app. Here: 2,000 loopback connections (4,000 lines,
 * about 600 KB, more with the host's other sockets; a table of 1.7 MB: 26.8 MiB held before, 0.06 MiB after), the sampled stream on IPv6 so that the whole IPv4 table is read without finding it.
 */

const PAIRS = 2000;
const MIB = 1024 * 1024;

describe.runIf(process.platform === 'linux' && fs.existsSync('/proc/self/net/tcp6'))('the kernel samples: memory of a proc table read', () => {
  const sockets: net.Socket[] = [];
  const servers: net.Server[] = [];
  afterAll(() => {
    for (const c of sockets) c.destroy();
    for (const s of servers) s.close();
    setOnSampled(null);
  });

  async function listen(host: string): Promise<number> {
    const server = net.createServer((c) => sockets.push(c));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, host, r));
    return (server.address() as net.AddressInfo).port;
  }

  async function connect(port: number, host: string): Promise<net.Socket> {
    const sock = net.connect(port, host);
    sockets.push(sock);
    await new Promise((r) => sock.once('connect', r));
    return sock;
  }

  it('holds at most a chunk of a table of 4,000 lines or more while reading it (fs.readFile held 16 times the table)', async () => {
    const v4 = await listen('127.0.0.1');
    for (let i = 0; i < PAIRS; i += 100) await Promise.all(Array.from({ length: 100 }, () => connect(v4, '127.0.0.1')));
    const sock = await connect(await listen('::1'), '::1');
    const table = fs.readFileSync('/proc/self/net/tcp', 'latin1').length;
    expect(table).toBeGreaterThan(PAIRS * 2 * 140);

    let slot: unknown;
    const res = { socket: sock, writableLength: 0, destroyed: false };
    const now = performance.now();
    const s = { blockedSince: now - 1000, config: { stallAfterMs: 500 }, res, h2: null, slot: () => slot, setSlot: (_i: number, v: unknown) => (slot = v) } as unknown as StreamState;
    const done = new Promise<readonly StreamState[]>((r) => setOnSampled(r));

    // ArrayBuffer memory allocated and not freed (no GC runs between two turns of the loop that allocate so little),
    // seen from every turn of the event loop while the read goes on: each of its chunks arrives in a turn of its own
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let reading = true;
    const watch = (): void => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
      if (reading) setImmediate(watch);
    };
    const issued = samplingStats.issued;
    considerForSampling(s, now);
    sampleCandidates(now);
    expect(samplingStats.issued).toBe(issued + 1);
    watch();
    const sampled = await done;
    reading = false;
    watch();
    expect(sampled).toEqual([s]); // found in tcp6, after the whole of tcp
    expect((slot as Progress).kernel).toBe(true);
    console.log(`proc table ${(table / 1024).toFixed(0)} KB: a read held at most ${(peak / MIB).toFixed(2)} MiB of ArrayBuffers`);
    expect(peak).toBeLessThan(MIB);
  }, 60_000);
});
