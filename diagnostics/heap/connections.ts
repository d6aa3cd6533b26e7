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
  'chunk',
  'data',
  'first',
  'second',
  'Timeout',
  'Immediate',
  'TimersList',
  'Map',
  'Set',
  'WeakMap',
  'WeakSet',
  'Array',
  'Object',
  'TCP',
  'Pipe',
  'TLSWrap',
  'system / NativeContext',
  'previous',
  'shared',
  'script_or_debug_info',
  'script',
  '_onTimeout',
  '_onImmediate',
  'system / PropertyArray',
  'detach_key_for_untransferable_arraybuffer',
  'name',
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
   * Bytes queued on a response, as its `writableLength` counts them: the response's own `outputData` (writes
   * before it had a socket), its socket's buffered writes (`_writableState`'s `<symbol kBufferedValue>` /
   * `buffered`) and the write in flight (the entries held by the write callback's closure, `buffered`), entry by
   * entry: a chunk queued N times counts N times. A string counts its length (a concatenated string the sum of
   * its parts), a Buffer the size of its ArrayBuffer's backing store. Buffers carved from Node's shared Buffer
   * pool (`Buffer.from` of a short string, such as the chunked encoding's CRLF) show only the pool in a snapshot,
   * not their own length: they count 0, so the total can be short by those few bytes, never long.
   */
  queuedBytes(res: number): number {
    const holders = new Set<number>();
    for (const p of ['outputData', '<symbol kChunkedBuffer>']) {
      const h = this.target(res, p);
      if (h !== NONE) holders.add(h);
    }
    const sock = this.socketOf(res);
    if (sock !== NONE) {
      const ws = this.target(sock, '_writableState');
      if (ws !== NONE) {
        for (const p of ['<symbol kBufferedValue>', 'buffered', 'bufferedRequest']) {
          const h = this.target(ws, p);
          if (h !== NONE) holders.add(h);
        }
        for (const p of ['<symbol kWriteCbValue>', 'writecb']) {
          // a writev in flight: its callback's closure holds the entries it wrote (`buffered`)
          const cb = this.target(ws, p);
          if (cb === NONE || this.snap.nodeType[cb] !== this.snap.T.closure) continue;
          const ctx = this.target(cb, 'context');
          const h = ctx === NONE ? NONE : this.target(ctx, 'buffered');
          if (h !== NONE) holders.add(h);
        }
      }
    }
    let bytes = 0;
    for (const h of holders) bytes += this.entriesBytes(h);
    return bytes;
  }

  /** The bytes of a queue: an Array of `{ chunk | data, encoding, callback }` entries (or of chunks). */
  private entriesBytes(holder: number): number {
    const snap = this.snap;
    if (snap.nodeType[holder] !== snap.T.object) return 0;
    const sChunk = this.str('chunk');
    const sData = this.str('data');
    let bytes = 0;
    for (let e = snap.firstEdge[holder], end = snap.firstEdge[holder + 1]; e < end; e++) {
      if (snap.edgeType(e) !== snap.E.element) continue;
      const entry = snap.edgeTarget(e);
      if (snap.nodeType[entry] === snap.T.object && !this.isBufferView(entry)) {
        let c = sChunk === NONE ? NONE : this.targetByIndex(entry, sChunk);
        if (c === NONE && sData !== NONE) c = this.targetByIndex(entry, sData);
        if (c !== NONE) bytes += this.chunkBytes(c);
      } else {
        bytes += this.chunkBytes(entry);
      }
    }
    return bytes;
  }

  private targetByIndex(node: number, nameIndex: number): number {
    const e = this.snap.findEdge(node, nameIndex);
    return e === NONE ? NONE : this.snap.edgeTarget(e);
  }

  private isBufferView(node: number): boolean {
    return this.target(node, 'buffer') !== NONE;
  }

  /** Length of one queued chunk: a string's length, or a Buffer's backing store (0 for a view into the pool). */
  chunkBytes(node: number): number {
    const snap = this.snap;
    if (snap.stringType[snap.nodeType[node]]) return this.stringLength(node);
    const ab = this.target(node, 'buffer');
    if (ab === NONE) return 0;
    const store = this.target(ab, 'backing_store');
    if (store === NONE || this.isBufferPool(ab)) return 0;
    return snap.selfSize(store);
  }

  /**
   * Whether an ArrayBuffer is Node's Buffer pool, which many small Buffers are views into. Its size is
   * `Buffer.poolSize` (8 KiB on Node 20, 64 KiB on Node 24, and the app may change it), so it is known by its
   * mark, not its size: Node marks the pool untransferable (`markAsUntransferable`), which stores a private
   * symbol on it, so it has a property array (`system / PropertyArray`) an ordinary Buffer's ArrayBuffer does not,
   * and on Node 24 also the `detach_key_for_untransferable_arraybuffer` symbol.
   */
  private isBufferPool(ab: number): boolean {
    const snap = this.snap;
    const sProps = this.str('system / PropertyArray');
    const sDetach = this.str('detach_key_for_untransferable_arraybuffer');
    if (sProps === NONE && sDetach === NONE) return false;
    for (let e = snap.firstEdge[ab], end = snap.firstEdge[ab + 1]; e < end; e++) {
      if (snap.edgeType(e) !== snap.E.hidden) continue;
      const t = snap.edgeTarget(e);
      if (sProps !== NONE && snap.nodeName[t] === sProps) return true;
      const symbolName = sDetach === NONE ? NONE : this.target(t, 'name');
      if (symbolName !== NONE && snap.nodeName[symbolName] === sDetach) return true;
    }
    return false;
  }

  /**
   * Characters in a string (what `writableLength` counts for a string chunk on a socket). A flat string's
   * length is its name's when the name is short enough to be whole, else its size less V8's 16-byte header;
   * a concatenated string is the sum of its parts (each part as often as it occurs); a sliced string its
   * size, the most it can be.
   */
  stringLength(node: number): number {
    const snap = this.snap;
    const T = snap.T;
    const sFirst = this.str('first');
    const sSecond = this.str('second');
    let total = 0;
    const stack = [node];
    for (let steps = 0; stack.length && steps < 1_000_000; steps++) {
      const v = stack.pop()!;
      const t = snap.nodeType[v];
      if (t === T.consString) {
        const a = sFirst === NONE ? NONE : this.targetByIndex(v, sFirst);
        const b = sSecond === NONE ? NONE : this.targetByIndex(v, sSecond);
        if (a !== NONE) stack.push(a);
        if (b !== NONE) stack.push(b);
        continue;
      }
      total += snap.stringLengthOf(v);
    }
    return total;
  }
}
