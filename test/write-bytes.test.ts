import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { get, scrape, serverPool, sum } from './helpers/http.js';

const serve = serverPool(afterEach);

/**
 * stream_bytes_written_total counts the bytes of what the handler writes, whatever form it takes: a string without
 * an encoding is UTF-8 (the write path asks Buffer.byteLength for its default, src/core/response-hook.ts), a string
 * with one is measured in it, a callback in the encoding's place is no encoding, a Buffer is its length.
 */
describe('bytes of a write', () => {
  it('a string without encoding is counted in UTF-8, one with an encoding in that encoding, a Buffer by its length', async () => {
    const registry = new Registry();
    const text = 'data: é€😀\n\n';
    const writes: Array<[string | Buffer, BufferEncoding | undefined]> = [
      [text, undefined],
      [text, 'latin1'],
      ['64617461', 'hex'],
      ['ZGF0YQ==', 'base64'],
      [text, 'utf16le'],
      [Buffer.from(text), undefined],
    ];
    const srv = await serve(
      instrument(
        async (_req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          for (const [chunk, enc] of writes) {
            if (enc === undefined) res.write(chunk);
            else res.write(chunk, enc);
            await new Promise((r) => setImmediate(r));
          }
          await new Promise<void>((r) => res.write(text, () => r()));
          res.end(text, 'utf8');
        },
        { registry, route: '/bytes' },
      ),
    );
    const r = await get(srv.url + '/bytes');
    const expected =
      writes.reduce((n, [c, e]) => n + (typeof c === 'string' ? Buffer.byteLength(c, e ?? 'utf8') : c.length), 0) + 2 * Buffer.byteLength(text);
    expect(r.body.length).toBe(expected);
    expect(sum(await scrape(registry), 'stream_bytes_written_total', { route: '/bytes' })).toBe(expected);
  });
});
