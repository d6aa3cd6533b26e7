import { describe, expect, it } from 'vitest';
import { pairKey, peerReceiveQueue, peerScan, readSendQueues } from '../src/consumers/detectors/progress.js';

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

  it('finds the receive queue of a client socket on this host: its addresses are ours swapped, in either table', () => {
    // ours: 127.0.0.1:8080 <- 127.0.0.1:53956 (inode 541273); the client's: the same pair swapped, 0x2A000 unread
    const table = [
      TCP.split('\n')[0],
      '   1: 0100007F:D2C4 0100007F:1F90 01 00000000:0002A000 00:00000000 00000000  1000        0 541274 1 00000000bb 20 4 30 10 -1',
      // the same ports between other addresses: not the client's socket
      '   2: 0200007F:D2C4 0100007F:1F90 01 00000000:00000777 00:00000000 00000000  1000        0 541275 1 00000000cc 20 4 30 10 -1',
      TCP.split('\n')[3],
      '',
    ].join('\n');
    const peers = peerScan();
    const key = pairKey(0xd2c4, 0x1f90);
    peers.pairs.add(key);
    peers.inodes.add(541273);
    const out = new Map<number, number>();
    readSendQueues(table, new Map([[541273, 1]]), out, false, peers);
    expect(out).toEqual(new Map([[541273, 0x3b8000]]));
    expect(peers.found).toBe(1);
    expect(peerReceiveQueue(peers, 541273, key)).toBe(0x2a000);
    // not seen: -1 (the send queue alone is used then)
    expect(peerReceiveQueue(peers, 541273, pairKey(1, 2))).toBe(-1);

    // ours in tcp6 as an IPv4-mapped address (an IPv6 listener), the client's in tcp
    const ours6 = [
      TCP6.split('\n')[0],
      '   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D2C4 01 003EF200:00000000 01:00000016 00000000     0        0 40802 2 0000000012345678 20 4 0 10 -1',
      '',
    ].join('\n');
    const p6 = peerScan();
    p6.pairs.add(key);
    p6.inodes.add(40802);
    const out6 = new Map<number, number>();
    readSendQueues(ours6, new Map([[40802, 1]]), out6, true, p6);
    readSendQueues(table, new Map([[40802, 1]]), out6, false, p6);
    expect(out6.get(40802)).toBe(0x3ef200);
    expect(peerReceiveQueue(p6, 40802, key)).toBe(0x2a000);
  });
});
