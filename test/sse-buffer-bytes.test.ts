import { afterEach, describe, expect, it } from 'vitest';
import type http from 'node:http';
import { sse, type SseStream } from '../src/index.js';
import { neverReadingClient, newRegistry, serverPool, sleep, until } from './helpers/http.js';

// maxBufferedBytes has one meaning and one unit everywhere: the bytes one response holds queued in the
// process. sse() used to count the UTF-16 length of its frames, so text that is not ASCII (3 bytes per
// character for CJK) could queue three times the cap before the cut.

const serve = serverPool(afterEach);

describe('sse() maxBufferedBytes is bytes', () => {
  it('with 3-byte characters the bytes queued in the process never pass the cap, and the cut comes at the cap', async () => {
    const cap = 256 * 1024;
    const data = '中'.repeat(10_000); // 10,000 UTF-16 units, 30,000 bytes
    let stream: SseStream | undefined;
    let res: http.ServerResponse | undefined;
    const srv = await serve((req, r) => {
      res = r;
      stream = sse(req, r, { registry: newRegistry(), route: '/bytes', heartbeatMs: 0, maxBufferedBytes: cap, drainTimeoutMs: 60_000 });
    });
    const sock = await neverReadingClient(srv.port, '/bytes');
    sock.on('error', () => {});
    try {
      await until(() => stream !== undefined && res !== undefined, 'the stream to open');
      const s = stream!;
      const r = res!;
      // 1. fill the kernel's buffers with ASCII (1 byte per character in any unit) until the process holds a
      //    queue that no longer moves: from then on every byte accepted stays in the process
      const ascii = 'x'.repeat(4096);
      let last = -1;
      let stableFor = 0;
      while (stableFor < 5) {
        while (r.writableLength < 64 * 1024 && !s.closed) void s.send(ascii).catch(() => undefined);
        await sleep(20);
        stableFor = r.writableLength > 0 && r.writableLength === last ? stableFor + 1 : 0;
        last = r.writableLength;
      }
      const before = r.writableLength; // bytes: only ASCII is queued
      expect(before).toBeLessThan(cap / 2);
      // 2. a producer that does not await send(): 3-byte text until the stream is cut
      const frameBytes = Buffer.byteLength(`data: ${data}\n\n`);
      let accepted = 0;
      while (!s.closed) {
        void s.send(data).catch(() => undefined);
        if (!s.closed) accepted++;
      }
      const queuedBytes = before + accepted * frameBytes;
      // Node's queue also holds each write's chunked framing (hex size and CRLFs, under 16 bytes), which the cut counts
      const nextWouldPass = before + accepted * (frameBytes + 16) + frameBytes > cap;
      expect({ queuedBytes: queuedBytes <= cap ? 'within the cap' : `${queuedBytes} bytes, over the cap of ${cap}`, nextWouldPass }).toEqual({
        queuedBytes: 'within the cap',
        nextWouldPass: true,
      });
    } finally {
      sock.destroy();
    }
  });
});
