import { describe, expect, it } from 'vitest';
import { readSendQueues } from '../src/consumers/detectors/progress.js';

/** The proc-table parser (pure): tx_queue by inode, for tcp and tcp6 lines as the kernel prints them. */

const TCP = [
  '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
  '   0: 0100007F:9FDD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 27340 1 0000000081e70bee 100 0 0 10 0',
  '   4: 0100007F:A213 0100007F:B0E6 06 00000000:00000000 03:0000120C 00000000     0        0 0 3 000000008dad4a63',
  '12345: 0100007F:1F90 0100007F:D2C4 01 003B8000:00000000 01:00000014 00000000  1000        0 541273 2 00000000aa 20 4 30 10 -1',
  '',
].join('\n');
const TCP6 = [
  '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
  '   0: 00000000000000000000000001000000:A6F1 00000000000000000000000001000000:9C3A 01 003EF200:00000000 01:00000016 00000000     0        0 40801 2 0000000012345678 20 4 0 10 -1',
  '',
].join('\n');

describe('readSendQueues', () => {
  it('finds the send queue of the wanted inodes in tcp and tcp6 tables, and only those', () => {
    const out = new Map<number, number>();
    readSendQueues(TCP, new Map([[541273, 1], [27340, 1], [999, 1]]), out);
    expect(out).toEqual(new Map([[541273, 0x3b8000], [27340, 0]]));
    const out6 = new Map<number, number>();
    readSendQueues(TCP6, new Map([[40801, 1]]), out6, true);
    expect(out6).toEqual(new Map([[40801, 0x3ef200]]));
  });

  it('skips lines of another shape instead of misreading them', () => {
    const out = new Map<number, number>();
    readSendQueues('header\ngarbage line 541273\n   1: short\n', new Map([[541273, 1]]), out);
    expect(out.size).toBe(0);
    // a tcp6 table read with the tcp layout finds nothing
    readSendQueues(TCP6, new Map([[40801, 1]]), out, false);
    expect(out.size).toBe(0);
  });
});
