/**
 * What a heap snapshot says about HTTP objects: which `ServerResponse`, `IncomingMessage` and `Socket`
 * objects belong to closed or destroyed connections, and how many bytes are queued on a response.
 *
 * V8 records a boolean or null property as a property edge to an Oddball node (`system / Oddball`, whose
 * `to_string` is the string "true", "false", "null" or "undefined"); small integers (Smis) are not recorded at
 * all, so bit-field state such as Node 20's stream `state` is invisible. The flags used here are the ones
 * that are real properties on Node 20 (and the same names are checked under the spellings later Node
 * versions use): `ServerResponse.destroyed` / `_closed`, `Socket`'s handle (`<symbol kHandle>` or `_handle`,
 * null once closed), `IncomingMessage.aborted` and its `socket`.
 */
import { HeapSnapshot, NONE } from './snapshot.js';

export const WANTED_STRINGS = [
  'ServerResponse',
  'IncomingMessage',
  'Socket',
  'TLSSocket',
  'system / Oddball',
  'true',
  'false',
  'null',
  'undefined',
  'destroyed',
  '_closed',
  'closed',
  'socket',
  '<symbol kSocket>',
  '<symbol kChunkedBuffer>',
  'connecting',
  '_handle',
  '<symbol kHandle>',
  'aborted',
  'outputData',
  '_writableState',
  '<symbol kBufferedValue>',
  'buffered',
  'bufferedRequest',
  '<symbol kWriteCbValue>',
  'writecb',
  'system / JSArrayBufferData',
  'map',
  '__proto__',
  'previous',
  'Server',
  'system / Context',
  'elements',
  'properties',
  'buffer',
  'backing_store',
  'context',
  'table',
];

export type Flag = 'true' | 'false' | 'null' | 'undefined' | 'object' | 'absent';

export class Connections {
  private readonly s: Record<string, number> = {};
  private readonly oddballName: number;
  private readonly oddValues: Map<number, Flag>;

  constructor(private readonly snap: HeapSnapshot) {
    for (const w of WANTED_STRINGS) this.s[w] = snap.stringIndex(w);
    this.oddballName = this.s['system / Oddball'];
    this.oddValues = new Map<number, Flag>();
    for (const v of ['true', 'false', 'null', 'undefined'] as const) if (this.s[v] !== NONE) this.oddValues.set(this.s[v], v);
  }

  /** String index of one of WANTED_STRINGS (NONE when this snapshot does not contain it). */
  str(value: string): number {
    return this.s[value] ?? NONE;
  }

  /** The value a property edge points to, as far as the snapshot tells. */
  flag(node: number, prop: string): Flag {
    const snap = this.snap;
    const e = snap.findEdge(node, this.str(prop));
    if (e === NONE) return 'absent';
    const t = snap.edgeTarget(e);
    return this.valueOf(t);
  }

  private valueOf(t: number): Flag {
    const snap = this.snap;
    const own = this.oddValues.get(snap.nodeName[t]);
    if (own && !snap.stringType[snap.nodeType[t]]) return own; // an Oddball named after its value
    if (snap.nodeName[t] === this.oddballName || snap.nodeType[t] === snap.T.hidden) {
      for (let e = snap.firstEdge[t], end = snap.firstEdge[t + 1]; e < end; e++) {
        const u = snap.edgeTarget(e);
        if (!snap.stringType[snap.nodeType[u]]) continue;
        const v = this.oddValues.get(snap.nodeName[u]);
        if (v) return v;
      }
    }
    return 'object';
  }

  /** The node a property edge points to, or NONE. */
  target(node: number, prop: string): number {
    const e = this.snap.findEdge(node, this.str(prop));
    return e === NONE ? NONE : this.snap.edgeTarget(e);
  }

  isClass(node: number, name: string): boolean {
    const snap = this.snap;
    return snap.nodeType[node] === snap.T.object && snap.nodeName[node] === this.str(name) && this.str(name) !== NONE;
  }

  socketClosed(sock: number): boolean {
    if (this.flag(sock, 'destroyed') === 'true') return true;
    if (this.flag(sock, '_closed') === 'true' || this.flag(sock, 'closed') === 'true') return true;
    if (this.flag(sock, 'connecting') === 'true') return false;
    const h1 = this.flag(sock, '<symbol kHandle>');
    const h2 = this.flag(sock, '_handle');
    return h1 === 'null' || (h1 === 'absent' && h2 === 'null');
  }

  /** A response's socket: `socket` on Node 20, `<symbol kSocket>` on Node 24. */
  socketOf(res: number): number {
    const a = this.target(res, 'socket');
    if (a !== NONE && this.isSocket(a)) return a;
    const b = this.target(res, '<symbol kSocket>');
    return b !== NONE && this.isSocket(b) ? b : NONE;
  }

  responseClosed(res: number): boolean {
    if (this.flag(res, 'destroyed') === 'true' || this.flag(res, '_closed') === 'true') return true;
    const sock = this.socketOf(res);
    return sock !== NONE && this.socketClosed(sock);
  }

  requestClosed(req: number): boolean {
    if (this.flag(req, 'aborted') === 'true' || this.flag(req, 'destroyed') === 'true') return true;
    if (this.flag(req, '_closed') === 'true' || this.flag(req, 'closed') === 'true') return true;
    const sock = this.socketOf(req);
    return sock !== NONE && this.socketClosed(sock);
  }

  /** A socket instance (prototypes named Socket have no stream state). */
  isSocket(node: number): boolean {
    if (!this.isClass(node, 'Socket') && !this.isClass(node, 'TLSSocket')) return false;
    return this.target(node, '_writableState') !== NONE;
  }

  /**
   * Bytes queued on a response and not yet handed to the kernel: the response's own `outputData` (writes
   * before it had a socket) and its socket's writable buffer and in-flight write (`_writableState`'s
   * buffered chunks and write callback). Counted as the sizes of the array-buffer backing stores and strings
   * reachable from those holders, each once.
   */
  queuedBytes(res: number): number {
    const holders: number[] = [];
    for (const p of ['outputData', '<symbol kChunkedBuffer>']) {
      const h = this.target(res, p);
      if (h !== NONE) holders.push(h);
    }
    const sock = this.socketOf(res);
    if (sock !== NONE) {
      const ws = this.target(sock, '_writableState');
      if (ws !== NONE) {
        for (const p of ['<symbol kBufferedValue>', 'buffered', 'bufferedRequest', '<symbol kWriteCbValue>', 'writecb']) {
          const h = this.target(ws, p);
          if (h !== NONE) holders.push(h);
        }
      }
    }
    return holders.length ? this.payloadBytes(holders) : 0;
  }

  private payloadBytes(holders: number[]): number {
    const snap = this.snap;
    const stop = new Set(
      ['ServerResponse', 'IncomingMessage', 'Socket', 'TLSSocket', 'Server'].map((n) => this.str(n)).filter((i) => i !== NONE),
    );
    const skipEdges = new Set([this.str('map'), this.str('__proto__'), this.str('previous')].filter((i) => i !== NONE));
    const follow = new Set(['elements', 'properties', 'buffer', 'backing_store', 'context', 'table'].map((n) => this.str(n)).filter((i) => i !== NONE));
    const abData = this.str('system / JSArrayBufferData');
    const seen = new Set<number>();
    let frontier = holders.filter((h) => !seen.has(h) && seen.add(h));
    let bytes = 0;
    for (let depth = 0; depth < 8 && frontier.length && seen.size < 20_000; depth++) {
      const next: number[] = [];
      for (const v of frontier) {
        const t = snap.nodeType[v];
        if (snap.stringType[t]) {
          bytes += snap.nodeSelf[v];
          continue;
        }
        if (t === snap.T.native && snap.nodeName[v] === abData) {
          bytes += snap.nodeSelf[v];
          continue;
        }
        if (t === snap.T.code || t === snap.T.synthetic || t === snap.T.objectShape) continue;
        if (t === snap.T.object && stop.has(snap.nodeName[v])) continue;
        for (let e = snap.firstEdge[v], end = snap.firstEdge[v + 1]; e < end; e++) {
          const et = snap.edgeType(e);
          if (et === snap.E.internal) {
            if (!follow.has(snap.edgeName[e])) continue;
          } else if (et !== snap.E.property && et !== snap.E.element && et !== snap.E.context) {
            continue;
          }
          if (!snap.indexEdge[et] && skipEdges.has(snap.edgeName[e])) continue;
          const w = snap.edgeTarget(e);
          if (seen.has(w)) continue;
          seen.add(w);
          next.push(w);
        }
      }
      frontier = next;
    }
    return bytes;
  }
}
