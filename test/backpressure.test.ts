import { afterEach, describe, expect, it } from 'vitest';
import type net from 'node:net';
import { Registry } from 'prom-client';
import { instrument, streams } from '../src/index.js';
import { neverReadingClient, scrape, startServer, sum, until, type TestServer } from './helpers/http.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

describe('backpressure with a real socket that stops reading', () => {
  it('raises write_blocked_total, shows the queued bytes, and times the wait once it drains', async () => {
    const registry = new Registry();
    const chunk = 'x'.repeat(64 * 1024);
    let blockedSeen = 0;
    const srv: TestServer = await startServer(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' });
          // a producer that ignores backpressure for a while: 8 MiB into a client that does not read
          let i = 0;
          const t = setInterval(() => {
            if (res.destroyed || i >= 128) {
              clearInterval(t);
              if (!res.destroyed) res.end();
              return;
            }
            if (!res.write(chunk)) blockedSeen++;
            i++;
          }, 1);
        },
        { registry, route: '/slow' },
      ),
    );
    cleanup.push(() => srv.close());
    const sock: net.Socket = await neverReadingClient(srv.port, '/slow');
    cleanup.push(() => sock.destroy());

    await until(async () => sum(await scrape(registry), 'write_blocked_total', { route: '/slow' }) > 0, 'blocked writes');
    // the queued bytes are visible while the client does not read
    await until(async () => sum(await scrape(registry), 'stream_buffered_bytes', { route: '/slow' }) > 1024 * 1024, 'buffered bytes > 1 MiB');
    const snap = streams().find((s) => s.route === '/slow')!;
    expect(snap.blockedWrites).toBeGreaterThan(0);
    expect(snap.bufferedBytes).toBeGreaterThan(1024 * 1024);
    expect(snap.blockedForMs).toBeGreaterThanOrEqual(0);
    // the kernel's buffers are full now and the current blocked write has not drained
    await until(() => (streams().find((s) => s.route === '/slow')?.blockedForMs ?? 0) > 50, 'a blocked write older than 50 ms');
    const before = await scrape(registry);
    const countBefore = sum(before, 'stream_write_blocked_seconds_count', { route: '/slow' });
    const sumBefore = sum(before, 'stream_write_blocked_seconds_sum', { route: '/slow' });

    sock.resume(); // the client reads again: the buffer drains
    sock.on('data', () => undefined);
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route: '/slow' }) === 1, 'stream to end');
    const samples = await scrape(registry);
    expect(sum(samples, 'stream_write_blocked_seconds_count', { route: '/slow' })).toBeGreaterThan(countBefore);
    expect(sum(samples, 'stream_write_blocked_seconds_sum', { route: '/slow' }) - sumBefore).toBeGreaterThan(0.05);
    expect(sum(samples, 'write_blocked_total', { route: '/slow' })).toBe(blockedSeen);
    expect(sum(samples, 'stream_buffered_bytes', { route: '/slow' })).toBe(0);
    expect(sum(samples, 'stream_bytes_written_total', { route: '/slow' })).toBe(128 * chunk.length);
  });

  it('observes the blocked time when the client closes instead of draining, and later writes are not backpressure', async () => {
    const registry = new Registry();
    const chunk = Buffer.alloc(256 * 1024, 1);
    const srv = await startServer(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
          const t = setInterval(() => res.write(chunk), 2);
          setTimeout(() => clearInterval(t), 1500).unref();
        },
        { registry, route: '/gone' },
      ),
    );
    cleanup.push(() => srv.close());
    const sock = await neverReadingClient(srv.port, '/gone');
    await until(async () => sum(await scrape(registry), 'write_blocked_total', { route: '/gone' }) > 0, 'blocked writes');
    await until(() => (streams().find((s) => s.route === '/gone')?.blockedForMs ?? 0) > 50, 'a blocked write older than 50 ms');
    const snapshot = await scrape(registry);
    const blockedBefore = sum(snapshot, 'write_blocked_total', { route: '/gone' });
    const episodesBefore = sum(snapshot, 'stream_write_blocked_seconds_count', { route: '/gone' });
    sock.destroy();
    await until(async () => sum(await scrape(registry), 'stream_writes_after_close_total', { route: '/gone' }) > 3, 'writes after close');
    const samples = await scrape(registry);
    // the open blocked episode is observed at close
    expect(sum(samples, 'stream_write_blocked_seconds_count', { route: '/gone' })).toBe(episodesBefore + 1);
    expect(sum(samples, 'stream_duration_seconds_count', { route: '/gone', outcome: 'client_aborted' })).toBe(1);
    // writes after close are counted there, never as blocked writes
    const blockedAfter = sum(samples, 'write_blocked_total', { route: '/gone' });
    expect(blockedAfter - blockedBefore).toBeLessThanOrEqual(1); // at most the in-flight write racing the close
  });

  it("sees a stream blocked again by the app's own 'drain' handler (the pump pattern)", async () => {
    const registry = new Registry();
    const srv = await startServer(
      instrument(
        (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' });
          const chunk = Buffer.alloc(64 * 1024, 97);
          let sent = 0;
          const pump = (): void => {
            while (sent < 64 * 1024 * 1024 && res.write(chunk)) sent += chunk.length;
          };
          res.on('drain', pump); // registered before streamscope's own drain listener exists
          pump();
        },
        { registry, route: '/pump' },
      ),
    );
    cleanup.push(() => srv.close());
    const sock = await neverReadingClient(srv.port, '/pump');
    cleanup.push(() => sock.destroy());
    // once the kernel's buffers are full, the last drain handler blocked again: the stream is blocked now
    await until(() => (streams().find((s) => s.route === '/pump')?.blockedForMs ?? 0) > 300, 'the stream to show as blocked');
    expect(sum(await scrape(registry), 'write_blocked_total', { route: '/pump' })).toBeGreaterThan(0);
  });
});
