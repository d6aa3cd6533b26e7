import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { get, scrape, serverPool, sum, until } from './helpers/http.js';

/**
 * `stream_first_byte_seconds` when nothing holds the bytes (src/consumers/detectors/buffered.ts `straightThrough`):
 * the first write goes to the socket in the call that gives it, so its first byte is the first write's time,
 * read then rather than in a look after it; and a response whose write reaches no socket (HEAD: Node drops the
 * body) has no first byte. (Layers that hold the bytes: test/buffered-tarball.test.ts.)
 */

const serve = serverPool(afterEach);

const sse: http.RequestListener = async (_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  for (let i = 0; i < 3; i++) {
    res.write(`data: ${i}\n\n`);
    await new Promise((r) => setTimeout(r, 5));
  }
  res.end();
};

function head(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .request(url, { method: 'HEAD' }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject)
      .end();
  });
}

describe('stream_first_byte_seconds without a layer', () => {
  it('is the first write itself: the same time as stream_first_write_seconds, stream by stream', async () => {
    const registry = new Registry();
    const route = '/plain';
    const srv = await serve(instrument(sse, { registry, route }));
    for (let i = 0; i < 4; i++) await get(srv.url);
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route }) === 4, 'four streams closed');
    const m = await scrape(registry);
    expect(sum(m, 'stream_first_write_seconds_count', { route })).toBe(4);
    expect(sum(m, 'stream_first_byte_seconds_count', { route })).toBe(4);
    // the same clock reading for both: equal sums (a look after the write would read a later time)
    expect(sum(m, 'stream_first_byte_seconds_sum', { route })).toBe(sum(m, 'stream_first_write_seconds_sum', { route }));
  });

  it('is not seen for a HEAD request: its body never reaches the socket', async () => {
    const registry = new Registry();
    const route = '/head';
    const srv = await serve(instrument(sse, { registry, route }));
    expect(await head(srv.url)).toBe(200);
    await until(async () => sum(await scrape(registry), 'stream_duration_seconds_count', { route }) === 1, 'the HEAD stream closed');
    const m = await scrape(registry);
    // the handler wrote (time to first token is its own) ...
    expect(sum(m, 'stream_first_write_seconds_count', { route })).toBe(1);
    // ... but no body byte went to the socket
    expect(sum(m, 'stream_first_byte_seconds_count', { route })).toBe(0);
  });
});
