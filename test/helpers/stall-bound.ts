import { readFile } from 'node:fs/promises';

const TABLES = ['/proc/self/net/tcp', '/proc/self/net/tcp6'];

/** One read of the kernel's TCP tables as the detector makes it (asynchronously, both files), in ms; 0 without /proc. */
async function timeRead(): Promise<number> {
  const t0 = performance.now();
  for (const file of TABLES) {
    try {
      await readFile(file, 'latin1');
    } catch {
      return 0;
    }
  }
  return performance.now() - t0;
}

/**
 * The latency bound of `stalled_write` for a client that reads nothing, as docs/detectors.md states it: found within
 * `stallAfterMs` + 1 s while a read of the kernel's TCP table takes under about 150 ms; on a host whose table is
 * larger (the read prints every TCP socket of the network namespace, other processes' too: a test beside that opens
 * 10,000 sockets), about five reads' time later. The table is read here as the detector reads it, at the start and
 * at the end of the test's wait, so the bound follows what this host's table costs now instead of assuming an idle
 * one (seen: reads of 0.4-0.5 s with 80,000 sockets on the host, the finding 1.5-2.6 s after the threshold).
 */
export async function stallBound(stallAfterMs: number): Promise<{ bound(): Promise<number>; readMs: number }> {
  const first = await timeRead();
  const out = {
    readMs: first,
    bound: async () => {
      out.readMs = Math.max(first, await timeRead());
      return stallAfterMs + 1000 + (out.readMs > 150 ? 5 * out.readMs : 0);
    },
  };
  return out;
}
