/**
 * A parsed heap snapshot: nodes and edges in typed arrays, strings left in the file and read back on demand.
 *
 * Node `n` (0-based index): type `nodeType[n]`, name string `nodeName[n]`, `nodeSelf[n]` bytes, edges
 * `firstEdge[n] … firstEdge[n + 1] - 1`. Edge `e`: target node `edgeTo[e] & TO_MASK`, type `edgeTo[e] >>> 29`,
 * name `edgeName[e]` (a string index, or an element/slot number for `element` and `hidden` edges).
 * Node 0 is V8's synthetic root; its children are `(GC roots)` and the other root categories.
 * After a lean parse (`readHeapSnapshot(path, { lean: true })`) `nodeName`, `nodeSelf` and `edgeName` are empty
 * until `loadColumns` reads them back from the file (analyze.ts does, once the graph work is done).
 */
import fs from 'node:fs';
import { InputError } from './input-error.js';

export const TO_MASK = 0x1fffffff;
export const NONE = 0xffffffff;

/**
 * Strings a mark is kept for: every STRING_STEP-th string's offset in the `strings` array. A string between
 * two marks is found by reading forward from the mark before it (HeapSnapshot.string), so the index costs one
 * word per 64 strings instead of two words per string (3.6 million strings, 27 MiB, in an 800 MB snapshot:
 * 6 % of the analyzer's peak).
 */
export const STRING_STEP = 64;
/**
 * Whether an array's memory can be given back at once, without waiting for a garbage collection:
 * `ArrayBuffer.prototype.transfer` (Node >= 21) detaches the buffer and frees its memory. analyze.ts then
 * releases the columns it does not need in a phase and reads them back from the file later.
 */
export const canRelease = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';

/** Frees an array's buffer now (every view of it becomes empty); false where the runtime cannot. */
export function release(a: { buffer: ArrayBufferLike }): boolean {
  if (!canRelease || a.buffer.byteLength === 0) return false;
  (a.buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0);
  return true;
}

/** Nodes a mark is kept for when self sizes are read back per node (HeapSnapshot.selfSize). */
const NODE_MARK = 64;

export interface SnapshotMeta {
  nodeFields: string[];
  edgeFields: string[];
  nodeTypes: string[];
  edgeTypes: string[];
  nodeCount: number;
  edgeCount: number;
}

export interface SnapshotData {
  path: string;
  fd: number;
  size: number;
  meta: SnapshotMeta;
  nodeCount: number;
  edgeCount: number;
  nodeType: Uint8Array;
  nodeName: Uint32Array;
  /** File offset of the first byte after the `[` of `nodes`. */
  nodesOffset: number;
  /** File offset of the first byte after the `[` of `edges`. */
  edgesOffset?: number;
  /** File offset of the first byte after the `[` of `locations`, or -1 (older V8 writes none). */
  locationsOffset?: number;
  nodeSelf: Uint32Array;
  firstEdge: Uint32Array;
  edgeTo: Uint32Array;
  edgeName: Uint32Array;
  /** File offset that string offsets count from. */
  strBase: number;
  /** Offset of every STRING_STEP-th string (tokenizer.ts), from strBase. */
  strMarks: Uint32Array;
  stringCount: number;
  /** Indices of the strings asked for while parsing. */
  found: Map<string, number>;
}

/** Index of a node or edge type by name, or 255 (never matches) when this V8 has no such type. */
function typeIndex(list: string[], name: string): number {
  const i = list.indexOf(name);
  return i < 0 ? 255 : i;
}

export class HeapSnapshot {
  readonly path: string;
  readonly size: number;
  readonly meta: SnapshotMeta;
  readonly nodeCount: number;
  readonly edgeCount: number;
  /** analyze.ts may release it for a while (release()) and read it back (scanNodes). */
  nodeType: Uint8Array;
  /** Empty after a lean parse until loadColumns fills it. */
  nodeName: Uint32Array;
  private readonly nodesOffset: number;
  private readonly edgesOffset: number;
  private readonly locationsOffset: number;
  /** Empty after a lean parse until loadColumns fills it; read selfSize(), which reads it back per node when it stays empty. */
  nodeSelf: Uint32Array;
  /** File offset of every 64th node in `nodes` (loadColumns with `selfMarks`), for selfSize() without nodeSelf. */
  private nodeMarks: Float64Array | null = null;
  firstEdge: Uint32Array;
  edgeTo: Uint32Array;
  /** Empty after a lean parse until loadColumns fills it. */
  edgeName: Uint32Array;
  readonly stringCount: number;
  private readonly strBase: number;
  private readonly strMarks: Uint32Array;
  private readonly found: Map<string, number>;
  private fd: number;
  private readonly cache = new Map<number, string>();
  private readonly lengths = new Map<number, number>();
  private readBuf: Buffer | null = null;

  /** Node type indices. */
  readonly T: {
    hidden: number;
    array: number;
    string: number;
    object: number;
    code: number;
    closure: number;
    regexp: number;
    number: number;
    native: number;
    synthetic: number;
    consString: number;
    slicedString: number;
    symbol: number;
    bigint: number;
    objectShape: number;
  };
  /** Edge type indices. */
  readonly E: { context: number; element: number; property: number; internal: number; hidden: number; shortcut: number; weak: number };
  /** 1 for edge types whose name is a number (element, hidden). */
  readonly indexEdge = new Uint8Array(8);
  /** 1 for node types that are strings. */
  readonly stringType = new Uint8Array(256);

  constructor(d: SnapshotData) {
    this.path = d.path;
    this.size = d.size;
    this.fd = d.fd;
    this.meta = d.meta;
    this.nodeCount = d.nodeCount;
    this.edgeCount = d.edgeCount;
    this.nodeType = d.nodeType;
    this.nodeName = d.nodeName;
    this.nodesOffset = d.nodesOffset;
    this.edgesOffset = d.edgesOffset ?? -1;
    this.locationsOffset = d.locationsOffset ?? -1;
    this.nodeSelf = d.nodeSelf;
    this.firstEdge = d.firstEdge;
    this.edgeTo = d.edgeTo;
    this.edgeName = d.edgeName;
    this.strBase = d.strBase;
    this.strMarks = d.strMarks;
    this.stringCount = d.stringCount;
    this.found = d.found;
    const nt = d.meta.nodeTypes;
    this.T = {
      hidden: typeIndex(nt, 'hidden'),
      array: typeIndex(nt, 'array'),
      string: typeIndex(nt, 'string'),
      object: typeIndex(nt, 'object'),
      code: typeIndex(nt, 'code'),
      closure: typeIndex(nt, 'closure'),
      regexp: typeIndex(nt, 'regexp'),
      number: typeIndex(nt, 'number'),
      native: typeIndex(nt, 'native'),
      synthetic: typeIndex(nt, 'synthetic'),
      consString: typeIndex(nt, 'concatenated string'),
      slicedString: typeIndex(nt, 'sliced string'),
      symbol: typeIndex(nt, 'symbol'),
      bigint: typeIndex(nt, 'bigint'),
      objectShape: typeIndex(nt, 'object shape'),
    };
    const et = d.meta.edgeTypes;
    this.E = {
      context: typeIndex(et, 'context'),
      element: typeIndex(et, 'element'),
      property: typeIndex(et, 'property'),
      internal: typeIndex(et, 'internal'),
      hidden: typeIndex(et, 'hidden'),
      shortcut: typeIndex(et, 'shortcut'),
      weak: typeIndex(et, 'weak'),
    };
    et.forEach((t, i) => {
      if (t === 'element' || t === 'hidden') this.indexEdge[i] = 1;
    });
    for (const t of [this.T.string, this.T.consString, this.T.slicedString]) if (t < 256) this.stringType[t] = 1;
  }

  /** Index of a string that was asked for while parsing, or NONE. */
  stringIndex(value: string): number {
    return this.found.get(value) ?? NONE;
  }

  /**
   * String `index` as it is in the file: its first 4096 bytes, its whole length in bytes and whether it holds
   * JSON escapes; null when it cannot be read. Found by reading forward from the mark of the STRING_STEP-th
   * string before it (strings are short: one read of 16 KiB usually holds all of them).
   */
  private rawString(index: number): { raw: Buffer; bytes: number; escaped: boolean } | null {
    if (index >= this.stringCount || this.fd < 0) return null;
    const buf = (this.readBuf ??= Buffer.allocUnsafe(1 << 14));
    const out = Buffer.allocUnsafe(4096);
    let kept = 0;
    let bytes = 0;
    let escaped = false;
    let skip = index % STRING_STEP;
    let pos = this.strBase + this.strMarks[(index - skip) / STRING_STEP];
    let inStr = true;
    let esc = false;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(this.fd, buf, 0, buf.length, pos);
      } catch {
        return null;
      }
      if (n === 0) return null;
      pos += n;
      for (let i = 0; i < n; i++) {
        const c = buf[i];
        if (!inStr) {
          // between two strings: ',' and whitespace up to the next quote
          if (c === 0x22) inStr = true;
          continue;
        }
        if (esc) esc = false;
        else if (c === 0x5c) {
          esc = true;
          if (skip === 0) escaped = true;
        } else if (c === 0x22) {
          if (skip === 0) return { raw: out.subarray(0, kept), bytes, escaped };
          skip--;
          inStr = false;
          continue;
        }
        if (skip === 0) {
          if (kept < out.length) out[kept++] = c;
          bytes++;
        }
      }
    }
  }

  /** The string at `index`, read back from the file (cached). Undecodable text comes back as read. */
  string(index: number): string {
    const hit = this.cache.get(index);
    if (hit !== undefined) return hit;
    const r = this.rawString(index);
    let text = r ? r.raw.toString('utf8') : '';
    if (r?.escaped) {
      try {
        text = JSON.parse(`"${text}"`) as string;
      } catch {
        /* keep the raw text: a name is for display only */
      }
    }
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(index, text);
    return text;
  }

  /**
   * Length of a flat string node: its name is the string itself, whole when shorter than V8's cut (1024
   * characters, noted in the file) — else its size less V8's 16-byte string header (one-byte strings).
   */
  stringLengthOf(node: number): number {
    const idx = this.nodeName[node];
    let known = this.lengths.get(idx);
    if (known === undefined) {
      // the string's length in the file (-1: escapes, decode it), kept per string index
      const r = this.rawString(idx);
      known = !r ? 0 : r.escaped && r.bytes < 1024 ? -1 : r.bytes;
      if (this.lengths.size > 100_000) this.lengths.clear();
      this.lengths.set(idx, known);
    }
    if (known === -1) return this.string(idx).length;
    if (known > 0 && known < 1024) return known;
    return Math.max(0, this.selfSize(node) - 16);
  }

  /** The typed arrays the snapshot holds (for accounting: analyze.ts's onHeld). */
  columns(): ArrayBufferView[] {
    const out: ArrayBufferView[] = [this.nodeType, this.nodeName, this.nodeSelf, this.firstEdge, this.edgeTo, this.edgeName, this.strMarks];
    if (this.nodeMarks) out.push(this.nodeMarks);
    return out;
  }

  /** Self size of a node: from nodeSelf, or read back from the file (from the mark of the 64th node before it). */
  selfSize(node: number): number {
    if (node < this.nodeSelf.length) return this.nodeSelf[node];
    const marks = this.nodeMarks;
    if (!marks || node >= this.nodeCount || this.fd < 0) return 0;
    const fields = this.meta.nodeFields;
    const F = fields.length;
    let skip = (node % NODE_MARK) * F + fields.indexOf('self_size');
    let pos = marks[Math.floor(node / NODE_MARK)];
    const buf = (this.readBuf ??= Buffer.allocUnsafe(1 << 14));
    let num = 0;
    let has = false;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(this.fd, buf, 0, buf.length, pos);
      } catch {
        return 0;
      }
      if (n === 0) return 0;
      pos += n;
      for (let i = 0; i < n; i++) {
        const c = buf[i];
        if (c >= 0x30 && c <= 0x39) {
          num = num * 10 + (c - 0x30);
          has = true;
          continue;
        }
        if (has) {
          if (skip-- === 0) return num > 0xffffffff ? 0xffffffff : num;
          num = 0;
          has = false;
        }
        if (c === 0x5d) return 0;
      }
    }
  }

  name(node: number): string {
    return this.string(this.nodeName[node]);
  }

  typeName(node: number): string {
    return this.meta.nodeTypes[this.nodeType[node]] ?? 'unknown';
  }

  edgeType(e: number): number {
    return this.edgeTo[e] >>> 29;
  }

  edgeTarget(e: number): number {
    return this.edgeTo[e] & TO_MASK;
  }

  /** Display name of an edge: the property or variable name, or `[i]` for elements. */
  edgeLabel(e: number): string {
    const t = this.edgeType(e);
    if (this.indexEdge[t]) return t === this.E.element ? `[${this.edgeName[e]}]` : `(${this.edgeName[e]})`;
    return this.string(this.edgeName[e]);
  }

  /** First edge of `node` whose name is the string with index `nameIndex` (property, internal or context), or NONE. */
  findEdge(node: number, nameIndex: number): number {
    if (nameIndex === NONE) return NONE;
    const end = this.firstEdge[node + 1];
    for (let e = this.firstEdge[node]; e < end; e++) {
      if (this.edgeName[e] === nameIndex && !this.indexEdge[this.edgeType(e)]) return e;
    }
    return NONE;
  }

  /**
   * V8's ids (`@id` in DevTools) of some nodes, read back from the file's `nodes` array: one sequential
   * scan up to the last node asked for. Nodes whose id cannot be read are left out.
   */
  nodeIds(nodes: Iterable<number>): Map<number, number> {
    const want = new Set(nodes);
    const out = new Map<number, number>();
    const F = this.meta.nodeFields.length;
    const idField = this.meta.nodeFields.indexOf('id');
    if (want.size === 0 || idField < 0 || this.fd < 0 || this.nodesOffset < 0) return out;
    const last = Math.max(...want);
    const buf = Buffer.allocUnsafe(1 << 20);
    let pos = this.nodesOffset;
    let k = 0; // value index
    let num = 0;
    let has = false;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(this.fd, buf, 0, buf.length, pos);
      } catch {
        return out;
      }
      if (n === 0) return out;
      pos += n;
      for (let i = 0; i < n; i++) {
        const c = buf[i];
        if (c >= 0x30 && c <= 0x39) {
          num = num * 10 + (c - 0x30);
          has = true;
          continue;
        }
        if (has) {
          const node = Math.floor(k / F);
          if (k % F === idField && want.has(node)) out.set(node, num);
          if (node > last) return out;
          k++;
          num = 0;
          has = false;
        }
        if (c === 0x5d) return out;
      }
    }
  }

  /**
   * Source positions of some closures, from the snapshot's `locations` section (`[object_index, script_id,
   * line, column]` per function, 0-based; V8 writes it for every JSFunction): one sequential scan of the
   * section. Returned 1-based, as editors and DevTools show them.
   */
  locations(nodes: Iterable<number>): Map<number, { line: number; column: number }> {
    const want = new Set(nodes);
    const out = new Map<number, { line: number; column: number }>();
    const fields = (this.meta as SnapshotMeta & { locationFields?: string[] }).locationFields ?? ['object_index', 'script_id', 'line', 'column'];
    const W = fields.length;
    const fObj = fields.indexOf('object_index');
    const fLine = fields.indexOf('line');
    const fCol = fields.indexOf('column');
    const F = this.meta.nodeFields.length;
    if (want.size === 0 || this.fd < 0 || this.locationsOffset < 0 || fObj < 0 || fLine < 0 || fCol < 0) return out;
    const buf = Buffer.allocUnsafe(1 << 20);
    let pos = this.locationsOffset;
    let k = 0;
    let num = 0;
    let has = false;
    let node = -1;
    let line = 0;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(this.fd, buf, 0, buf.length, pos);
      } catch {
        return out;
      }
      if (n === 0) return out;
      pos += n;
      for (let i = 0; i < n; i++) {
        const c = buf[i];
        if (c >= 0x30 && c <= 0x39) {
          num = num * 10 + (c - 0x30);
          has = true;
          continue;
        }
        if (has) {
          const f = k % W;
          if (f === fObj) node = num / F;
          else if (f === fLine) line = num;
          if (f === fCol && want.has(node)) {
            out.set(node, { line: line + 1, column: num + 1 });
            if (out.size === want.size) return out;
          }
          k++;
          num = 0;
          has = false;
        }
        if (c === 0x5d) return out;
      }
    }
  }

  /**
   * One sequential pass over the file's `nodes` array: `onNode(node, name, selfSize, edgeCount)` for every
   * node, in order. The file was checked whole when parsed; a file changed since then is an InputError.
   */
  scanNodes(onNode: (node: number, name: number, self: number, edgeCount: number, type: number) => void, marks?: Float64Array): void {
    const fields = this.meta.nodeFields;
    const F = fields.length;
    const fType = fields.indexOf('type');
    const types = this.meta.nodeTypes.length;
    let type = 0;
    const fName = fields.indexOf('name');
    const fSelf = fields.indexOf('self_size');
    const fEdges = fields.indexOf('edge_count');
    let node = 0;
    let field = 0;
    let name = 0;
    let self = 0;
    let edges = 0;
    this.scanNumbers(this.nodesOffset, (vals, count) => {
      for (let i = 0; i < count; i++) {
        const v = vals[i];
        if (field === fName) name = v;
        else if (field === fType) {
          if (v >= types) this.changed();
          type = v;
        } else if (field === fSelf) self = v > 0xffffffff ? 0xffffffff : v;
        else if (field === fEdges) edges = v;
        if (++field === F) {
          if (node >= this.nodeCount) this.changed();
          onNode(node++, name, self, edges, type);
          field = 0;
        }
      }
    }, marks ? { every: NODE_MARK * F, at: marks } : undefined);
    if (node !== this.nodeCount || field !== 0) this.changed();
  }

  /**
   * Read the columns a lean parse left out back from the file (one pass over `nodes`, one over `edges`), into
   * the arrays given (each at least as long as its column; a caller reuses arrays that are free by then).
   * `firstEdge` and `edgeTo` are read again too when given (their arrays were lent out).
   */
  loadColumns(into: { nodeName?: Uint32Array; nodeSelf?: Uint32Array; firstEdge?: Uint32Array; edgeTo?: Uint32Array; edgeName?: Uint32Array; selfMarks?: boolean }): void {
    const N = this.nodeCount;
    const { nodeName, nodeSelf, firstEdge } = into;
    const marks = into.selfMarks ? new Float64Array(Math.ceil(N / NODE_MARK)) : undefined;
    if (nodeName || nodeSelf || firstEdge || marks) {
      let sum = 0;
      if (firstEdge) firstEdge[0] = 0;
      this.scanNodes((n, name, self, edges) => {
        if (nodeName) nodeName[n] = name;
        if (nodeSelf) nodeSelf[n] = self;
        if (firstEdge) firstEdge[n + 1] = sum += edges;
      }, marks);
      if (marks) this.nodeMarks = marks;
      if (firstEdge && sum !== this.edgeCount) this.changed();
      if (nodeName) this.nodeName = nodeName.length === N ? nodeName : nodeName.subarray(0, N);
      if (nodeSelf) this.nodeSelf = nodeSelf.length === N ? nodeSelf : nodeSelf.subarray(0, N);
      if (firstEdge) this.firstEdge = firstEdge.length === N + 1 ? firstEdge : firstEdge.subarray(0, N + 1);
    }
    const { edgeTo, edgeName } = into;
    if (edgeTo || edgeName) {
      const fields = this.meta.edgeFields;
      const W = fields.length;
      const fType = fields.indexOf('type');
      const fName = fields.indexOf('name_or_index');
      const fTo = fields.indexOf('to_node');
      const F = this.meta.nodeFields.length;
      const M = this.edgeCount;
      const types = this.meta.edgeTypes.length;
      let e = 0;
      let field = 0;
      let type = 0;
      let to = 0;
      this.scanNumbers(this.edgesOffset, (vals, count) => {
        for (let i = 0; i < count; i++) {
          const v = vals[i];
          if (field === fType) {
            if (v >= types) this.changed();
            type = v;
          } else if (field === fTo) {
            to = v / F;
            if (to !== Math.floor(to) || to >= N) this.changed();
          } else if (field === fName && edgeName) {
            edgeName[e] = v > 0xffffffff ? 0xffffffff : v;
          }
          if (++field === W) {
            if (e >= M) this.changed();
            if (edgeTo) edgeTo[e] = ((type << 29) | to) >>> 0;
            e++;
            field = 0;
          }
        }
      });
      if (e !== M || field !== 0) this.changed();
      if (edgeTo) this.edgeTo = edgeTo.length === M ? edgeTo : edgeTo.subarray(0, M);
      if (edgeName) this.edgeName = edgeName.length === M ? edgeName : edgeName.subarray(0, M);
    }
  }

  private changed(): never {
    throw new InputError(`${this.path} changed while it was being analyzed`);
  }

  /** Calls `onValues` with the numbers of the array that starts at `offset`, up to its `]`, a batch at a time. */
  private scanNumbers(offset: number, onValues: (values: Float64Array, count: number) => void, mark?: { every: number; at: Float64Array }): void {
    if (this.fd < 0 || offset < 0) this.changed();
    const buf = Buffer.allocUnsafe(1 << 20);
    const vals = new Float64Array(1 << 16);
    // `mark`: the offset of every `every`-th value (the separator before it: a reader skips to the digits)
    const every = mark ? mark.every : 0;
    if (mark && mark.at.length > 0) mark.at[0] = offset;
    let untilMark = every;
    let marked = 1;
    let k = 0;
    let pos = offset;
    let num = 0;
    let has = false;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(this.fd, buf, 0, buf.length, pos);
      } catch (err) {
        throw new InputError(`cannot read ${this.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      if (n === 0) this.changed();
      pos += n;
      for (let i = 0; i < n; i++) {
        const c = buf[i];
        if (c >= 0x30 && c <= 0x39) {
          num = num * 10 + (c - 0x30);
          has = true;
          continue;
        }
        if (has) {
          vals[k++] = num;
          if (every && --untilMark === 0) {
            untilMark = every;
            if (marked < mark!.at.length) mark!.at[marked++] = pos - n + i;
          }
          if (k === vals.length) {
            onValues(vals, k);
            k = 0;
          }
          num = 0;
          has = false;
        }
        if (c === 0x5d) {
          if (k > 0) onValues(vals, k);
          return;
        }
      }
    }
  }

  close(): void {
    if (this.fd >= 0) {
      try {
        fs.closeSync(this.fd);
      } catch {
        /* ignore */
      }
      this.fd = -1;
    }
  }
}
