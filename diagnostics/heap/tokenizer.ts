/**
 * The byte-level tokenizer behind readHeapSnapshot (parse.ts): a state machine fed one chunk at a time. The
 * `snapshot` header is collected and parsed as JSON (it is small), `nodes` and `edges` numbers are routed
 * field by field into typed arrays, only the positions of `strings` are kept, and other sections are skipped.
 * Every inconsistency (counts, types, targets, truncation) is an InputError with one line.
 */
import { InputError } from './input-error.js';
import { HeapSnapshot, STRING_STEP, type SnapshotMeta } from './snapshot.js';
import { parseMeta } from './meta.js';

/** Node indices share a word with the edge type (3 bits). */
export const MAX_NODES = 1 << 29;
const MAX_HEADER = 1 << 20;
const U32_MAX = 0xffffffff;

const enum S {
  TopStart,
  KeyOrEnd,
  Key,
  Colon,
  ValueStart,
  IntArrStart,
  IntArr,
  StrArrStart,
  StrArrItem,
  Str,
  StrArrSep,
  Raw,
  RawString,
  RawScalar,
  AfterValue,
  Done,
}

const enum Section {
  None,
  Nodes,
  Edges,
  Skip,
}

/** Node-field roles. */
const enum NR {
  Skip,
  Type,
  Name,
  Id,
  Self,
  EdgeCount,
}
const enum ER {
  Skip,
  Type,
  Name,
  To,
}

export interface TokenizerOptions {
  wanted?: Iterable<string>;
  /**
   * Keep only the graph (edge targets and types, first edges, node types) and the strings' positions: node
   * names, self sizes and edge names are checked but not stored, for HeapSnapshot.loadColumns to read back
   * when the analysis needs them (analyze.ts: a third less memory at the dominator tree's peak).
   */
  lean?: boolean;
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function describe(c: number): string {
  return c >= 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `byte 0x${c.toString(16).padStart(2, '0')}`;
}

/** Where the strings are: a mark (offset from the first string) for every STRING_STEP-th string (snapshot.ts). */
class StringMarks {
  base = -1;
  marks = new Uint32Array(1024);
  count = 0;
  push(start: number): void {
    if (this.base < 0) this.base = start;
    if (this.count % STRING_STEP === 0) {
      const k = this.count / STRING_STEP;
      if (k === this.marks.length) {
        const m = new Uint32Array(k * 2);
        m.set(this.marks);
        this.marks = m;
      }
      const rel = start - this.base;
      if (rel > 0xffffffff) throw new InputError('the "strings" section is larger than 4 GiB');
      this.marks[k] = rel;
    }
    this.count++;
  }
}

export class SnapshotParser {
  private state = S.TopStart;
  private firstKey = true;
  private key = '';
  private keyBytes: number[] = [];
  private keyEsc = false;

  // raw value skipper / collector
  private depth = 0;
  private inStr = false;
  private esc = false;
  private collect: Buffer[] | null = null;
  private collected = 0;

  // int arrays
  private section = Section.None;
  private num = 0;
  private hasDigits = false;
  private field = 0;
  private index = 0;
  private roles: Uint8Array = new Uint8Array(0);
  private width = 0;
  private edgeSum = 0;

  // strings
  private strStart = 0;
  private strEsc = 0;
  private strEscaped = false;
  private small: number[] = [];
  private smallOk = true;
  private sawStrings = false;
  private sawNodes = false;
  private sawEdges = false;
  private strings = new StringMarks();
  private wanted: Set<string>;
  private wantedLens: Set<number>;
  private found = new Map<string, number>();

  // results
  private meta: SnapshotMeta | null = null;
  private nodeCount = 0;
  private edgeCount = 0;
  private nodeType!: Uint8Array;
  private nodeName!: Uint32Array;
  private nodesOffset = -1;
  private locationsOffset = -1;
  private nodeSelf!: Uint32Array;
  private firstEdge!: Uint32Array;
  private edgeTo!: Uint32Array;
  private edgeName!: Uint32Array;
  private nodeTypeCount = 0;
  private edgeTypeCount = 0;
  private edgesOffset = -1;
  private readonly lean: boolean;
  /** Largest node name and largest string-valued edge name seen (checked against the string count at the end). */
  private maxNodeName = -1;
  private maxEdgeName = -1;
  private indexTypes = new Uint8Array(8);
  private typeBeforeName = true;
  private edgeTypeNow = 0;

  constructor(
    private readonly path: string,
    private readonly size: number,
    options: TokenizerOptions,
  ) {
    this.lean = options.lean === true;
    this.wanted = new Set(options.wanted ?? []);
    this.wantedLens = new Set([...this.wanted].map((s) => Buffer.byteLength(s)));
  }

  private fail(what: string): never {
    throw new InputError(`${this.path} is not a valid V8 heap snapshot: ${what}`);
  }

  feed(buf: Buffer, n: number, base: number): void {
    let i = 0;
    while (i < n) {
      switch (this.state) {
        case S.IntArr:
          i = this.intArr(buf, i, n);
          break;
        case S.Str:
          i = this.str(buf, i, n, base);
          break;
        case S.Raw:
        case S.RawString:
        case S.RawScalar:
          i = this.raw(buf, i, n);
          break;
        default:
          this.structural(buf[i], base + i);
          i++;
      }
    }
  }

  private structural(c: number, at: number): void {
    switch (this.state) {
      case S.TopStart:
        if (isWs(c)) return;
        if (c === 0xef || c === 0xbb || c === 0xbf) return; // UTF-8 BOM
        if (c !== 0x7b) this.fail(`expected '{' at offset ${at}, found ${describe(c)}`);
        this.state = S.KeyOrEnd;
        return;
      case S.KeyOrEnd:
        if (isWs(c)) return;
        if (c === 0x22) {
          this.keyBytes = [];
          this.keyEsc = false;
          this.state = S.Key;
          return;
        }
        if (c === 0x7d && this.firstKey) {
          this.state = S.Done;
          return;
        }
        this.fail(`expected a key at offset ${at}, found ${describe(c)}`);
      // falls through (fail never returns)
      case S.Key:
        if (this.keyEsc) {
          this.keyEsc = false;
        } else if (c === 0x5c) {
          this.keyEsc = true;
        } else if (c === 0x22) {
          this.key = Buffer.from(this.keyBytes).toString('utf8');
          this.state = S.Colon;
          return;
        }
        if (this.keyBytes.length > 256) this.fail(`key too long at offset ${at}`);
        this.keyBytes.push(c);
        return;
      case S.Colon:
        if (isWs(c)) return;
        if (c !== 0x3a) this.fail(`expected ':' at offset ${at}, found ${describe(c)}`);
        this.state = S.ValueStart;
        return;
      case S.ValueStart:
        if (isWs(c)) return;
        this.firstKey = false;
        this.beginValue(c, at);
        return;
      case S.IntArrStart:
        if (isWs(c)) return;
        if (c !== 0x5b) this.fail(`"${this.key}" must be an array (offset ${at})`);
        if (this.section === Section.Nodes) this.nodesOffset = at + 1;
        else if (this.section === Section.Edges) this.edgesOffset = at + 1;
        this.state = S.IntArr;
        return;
      case S.StrArrStart:
        if (isWs(c)) return;
        if (c !== 0x5b) this.fail(`"strings" must be an array (offset ${at})`);
        this.state = S.StrArrItem;
        return;
      case S.StrArrItem:
        if (isWs(c)) return;
        if (c === 0x22) {
          this.strStart = at + 1;
          this.strEscaped = false;
          this.strEsc = 0;
          this.small = [];
          this.smallOk = true;
          this.state = S.Str;
          return;
        }
        if (c === 0x5d && this.strings.count === 0) {
          this.state = S.AfterValue;
          return;
        }
        this.fail(`expected a string in "strings" at offset ${at}, found ${describe(c)}`);
      // falls through
      case S.StrArrSep:
        if (isWs(c)) return;
        if (c === 0x2c) {
          this.state = S.StrArrItem;
          return;
        }
        if (c === 0x5d) {
          this.state = S.AfterValue;
          return;
        }
        this.fail(`expected ',' or ']' in "strings" at offset ${at}, found ${describe(c)}`);
      // falls through
      case S.AfterValue:
        if (isWs(c)) return;
        if (c === 0x2c) {
          this.state = S.KeyOrEnd;
          return;
        }
        if (c === 0x7d) {
          this.state = S.Done;
          return;
        }
        this.fail(`expected ',' or '}' at offset ${at}, found ${describe(c)}`);
      // falls through
      case S.Done:
        if (isWs(c) || c === 0) return;
        this.fail(`unexpected data after the end at offset ${at}`);
    }
  }

  private beginValue(c: number, at: number): void {
    const key = this.key;
    if (key === 'snapshot') {
      if (this.meta) this.fail('two "snapshot" headers');
      if (c !== 0x7b) this.fail(`"snapshot" must be an object (offset ${at})`);
      this.collect = [Buffer.from([c])];
      this.collected = 1;
      this.depth = 1;
      this.inStr = false;
      this.esc = false;
      this.state = S.Raw;
      return;
    }
    if (key === 'nodes' || key === 'edges') {
      if (!this.meta) this.fail(`"${key}" comes before the "snapshot" header`);
      if ((key === 'nodes' && this.sawNodes) || (key === 'edges' && this.sawEdges)) this.fail(`two "${key}" arrays`);
      this.startIntArray(key === 'nodes' ? Section.Nodes : Section.Edges);
      this.state = S.IntArrStart;
      this.structural(c, at);
      return;
    }
    if (key === 'strings') {
      if (this.sawStrings) this.fail('two "strings" arrays');
      this.sawStrings = true;
      this.state = S.StrArrStart;
      this.structural(c, at);
      return;
    }
    // anything else: skip one JSON value (the position of `locations` is kept: closures' source positions are read back on demand)
    if (key === 'locations' && c === 0x5b) this.locationsOffset = at + 1;
    this.collect = null;
    this.inStr = false;
    this.esc = false;
    if (c === 0x7b || c === 0x5b) {
      this.depth = 1;
      this.state = S.Raw;
    } else if (c === 0x22) {
      this.state = S.RawString;
    } else {
      this.state = S.RawScalar;
    }
  }

  private startIntArray(section: Section): void {
    const meta = this.meta!;
    this.section = section;
    this.num = 0;
    this.hasDigits = false;
    this.field = 0;
    this.index = 0;
    if (section === Section.Nodes) {
      this.sawNodes = true;
      this.width = meta.nodeFields.length;
      this.roles = new Uint8Array(this.width);
      meta.nodeFields.forEach((f, i) => {
        this.roles[i] =
          f === 'type' ? NR.Type : f === 'name' ? NR.Name : f === 'id' ? NR.Id : f === 'self_size' ? NR.Self : f === 'edge_count' ? NR.EdgeCount : NR.Skip;
      });
    } else {
      this.sawEdges = true;
      this.width = meta.edgeFields.length;
      this.roles = new Uint8Array(this.width);
      meta.edgeFields.forEach((f, i) => {
        this.roles[i] = f === 'type' ? ER.Type : f === 'name_or_index' ? ER.Name : f === 'to_node' ? ER.To : ER.Skip;
      });
    }
  }

  private intArr(buf: Buffer, i: number, n: number): number {
    let num = this.num;
    let has = this.hasDigits;
    for (; i < n; i++) {
      const c = buf[i];
      if (c >= 0x30 && c <= 0x39) {
        num = num * 10 + (c - 0x30);
        has = true;
        continue;
      }
      if (c === 0x2c || c === 0x5d) {
        if (has) {
          this.store(num);
          num = 0;
          has = false;
        } else if (!this.pendingSep && (c === 0x2c || this.index !== 0 || this.field !== 0)) {
          this.fail(`empty element in "${this.section === Section.Nodes ? 'nodes' : 'edges'}"`);
        }
        this.pendingSep = false;
        if (c === 0x5d) {
          this.num = 0;
          this.hasDigits = false;
          this.endIntArray();
          this.state = S.AfterValue;
          return i + 1;
        }
        continue;
      }
      if (isWs(c)) {
        if (has) {
          // a number ends at whitespace; the separator must follow
          this.store(num);
          num = 0;
          has = false;
          this.pendingSep = true;
        }
        continue;
      }
      this.fail(`unexpected ${describe(c)} in "${this.section === Section.Nodes ? 'nodes' : 'edges'}"`);
    }
    this.num = num;
    this.hasDigits = has;
    return i;
  }

  private pendingSep = false;

  private store(v: number): void {
    if (this.pendingSep) this.fail(`missing ',' between numbers in "${this.section === Section.Nodes ? 'nodes' : 'edges'}"`);
    if (this.section === Section.Nodes) this.storeNode(v);
    else this.storeEdge(v);
    if (++this.field === this.width) {
      this.field = 0;
      this.index++;
    }
  }

  private storeNode(v: number): void {
    const n = this.index;
    if (n >= this.nodeCount) this.fail(`more nodes than node_count (${this.nodeCount})`);
    switch (this.roles[this.field]) {
      case NR.Type:
        if (v >= this.nodeTypeCount) this.fail(`node ${n} has unknown type ${v}`);
        this.nodeType[n] = v;
        break;
      case NR.Name:
        if (v > U32_MAX) this.fail(`node ${n} has an out-of-range name`);
        if (v > this.maxNodeName) this.maxNodeName = v;
        if (!this.lean) this.nodeName[n] = v;
        break;
      case NR.Id:
        break; // read back on demand (HeapSnapshot.nodeIds): one word per node saved
      case NR.Self:
        if (!this.lean) this.nodeSelf[n] = v > U32_MAX ? U32_MAX : v;
        break;
      case NR.EdgeCount:
        this.edgeSum += v;
        if (this.edgeSum > this.edgeCount) this.fail(`edge counts of the nodes exceed edge_count (${this.edgeCount})`);
        this.firstEdge[n + 1] = this.edgeSum;
        break;
    }
  }

  private storeEdge(v: number): void {
    const e = this.index;
    if (e >= this.edgeCount) this.fail(`more edges than edge_count (${this.edgeCount})`);
    switch (this.roles[this.field]) {
      case ER.Type:
        if (v >= this.edgeTypeCount) this.fail(`edge ${e} has unknown type ${v}`);
        this.edgeTo[e] = (this.edgeTo[e] & 0x1fffffff) | (v << 29);
        this.edgeTypeNow = v;
        break;
      case ER.Name:
        if (v > U32_MAX) this.fail(`edge ${e} has an out-of-range name`);
        if (this.lean) {
          // the type comes first in every V8 snapshot (else names are checked when read back: string() is bounds-safe)
          if (this.typeBeforeName && !this.indexTypes[this.edgeTypeNow] && v > this.maxEdgeName) this.maxEdgeName = v;
        } else this.edgeName[e] = v;
        break;
      case ER.To: {
        const w = this.meta!.nodeFields.length;
        const to = v / w;
        if (to !== Math.floor(to) || to >= this.nodeCount) this.fail(`edge ${e} points outside the nodes (${v})`);
        this.edgeTo[e] = (this.edgeTo[e] & 0xe0000000) | to;
        break;
      }
    }
  }

  private endIntArray(): void {
    if (this.field !== 0) this.fail(`"${this.section === Section.Nodes ? 'nodes' : 'edges'}" ends in the middle of an entry`);
    if (this.section === Section.Nodes) {
      if (this.index !== this.nodeCount) this.fail(`found ${this.index} nodes, the header says ${this.nodeCount}`);
    } else if (this.index !== this.edgeCount) {
      this.fail(`found ${this.index} edges, the header says ${this.edgeCount}`);
    }
    this.section = Section.None;
  }

  private str(buf: Buffer, i: number, n: number, base: number): number {
    let esc = this.strEsc;
    const from = i;
    for (; i < n; i++) {
      const c = buf[i];
      if (esc) {
        esc = 0;
        continue;
      }
      if (c === 0x5c) {
        esc = 1;
        this.strEscaped = true;
        continue;
      }
      if (c === 0x22) {
        const end = base + i;
        this.keepSmall(buf, from, i);
        this.endString(end);
        this.strEsc = 0;
        this.state = S.StrArrSep;
        return i + 1;
      }
    }
    this.strEsc = esc;
    this.keepSmall(buf, from, n);
    return i;
  }

  private keepSmall(buf: Buffer, from: number, to: number): void {
    if (!this.smallOk) return;
    if (this.small.length + (to - from) > 64) {
      this.smallOk = false;
      return;
    }
    for (let k = from; k < to; k++) this.small.push(buf[k]);
  }

  private endString(end: number): void {
    const len = end - this.strStart;
    if (len >= 0x80000000) this.fail('a string is too long');
    const index = this.strings.count;
    this.strings.push(this.strStart);
    if (this.smallOk && !this.strEscaped && this.wantedLens.has(len)) {
      const s = Buffer.from(this.small).toString('utf8');
      if (this.wanted.has(s) && !this.found.has(s)) this.found.set(s, index);
    }
  }

  private raw(buf: Buffer, i: number, n: number): number {
    const from = i;
    if (this.state === S.RawScalar) {
      for (; i < n; i++) {
        const c = buf[i];
        if (c === 0x2c || c === 0x7d || isWs(c)) {
          this.state = S.AfterValue;
          return i; // reprocess the separator
        }
        if (c === 0x5b || c === 0x7b || c === 0x5d || c === 0x22) this.fail(`malformed value of "${this.key}"`);
      }
      return i;
    }
    for (; i < n; i++) {
      const c = buf[i];
      if (this.esc) {
        this.esc = false;
        continue;
      }
      if (this.state === S.RawString || this.inStr) {
        if (c === 0x5c) this.esc = true;
        else if (c === 0x22) {
          if (this.state === S.RawString) {
            this.state = S.AfterValue;
            return i + 1;
          }
          this.inStr = false;
        }
        continue;
      }
      if (c === 0x22) this.inStr = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if (c === 0x7d || c === 0x5d) {
        if (--this.depth === 0) {
          i++;
          this.collectBytes(buf, from, i);
          if (this.collect) this.finishHeader();
          this.state = S.AfterValue;
          return i;
        }
      }
    }
    this.collectBytes(buf, from, i);
    return i;
  }

  private collectBytes(buf: Buffer, from: number, to: number): void {
    if (!this.collect || to <= from) return;
    this.collected += to - from;
    if (this.collected > MAX_HEADER) this.fail('the "snapshot" header is too large');
    this.collect.push(Buffer.from(buf.subarray(from, to)));
  }

  private finishHeader(): void {
    let header: unknown;
    try {
      header = JSON.parse(Buffer.concat(this.collect!).toString('utf8'));
    } catch {
      this.fail('the "snapshot" header is not valid JSON');
    }
    this.collect = null;
    const meta = parseMeta(header, (what) => this.fail(what));
    this.meta = meta;
    const { nodeCount, edgeCount } = meta;
    if (nodeCount >= MAX_NODES) this.fail(`node_count ${nodeCount} is larger than this analyzer supports (${MAX_NODES})`);
    // every number takes at least two bytes of text ("0,")
    if (nodeCount * meta.nodeFields.length * 2 > this.size || edgeCount * meta.edgeFields.length * 2 > this.size) {
      this.fail(`node_count/edge_count (${nodeCount}/${edgeCount}) do not fit in a file of ${this.size} bytes`);
    }
    this.nodeCount = nodeCount;
    this.edgeCount = edgeCount;
    this.nodeTypeCount = meta.nodeTypes.length;
    this.edgeTypeCount = meta.edgeTypes.length;
    if (this.edgeTypeCount > 8) this.fail('more than 8 edge types');
    this.nodeType = new Uint8Array(nodeCount);
    this.nodeName = new Uint32Array(this.lean ? 0 : nodeCount);
    this.nodeSelf = new Uint32Array(this.lean ? 0 : nodeCount);
    this.firstEdge = new Uint32Array(nodeCount + 1);
    this.edgeTo = new Uint32Array(edgeCount);
    this.edgeName = new Uint32Array(this.lean ? 0 : edgeCount);
    meta.edgeTypes.forEach((t, i) => {
      if (t === 'element' || t === 'hidden') this.indexTypes[i] = 1;
    });
    const ef = meta.edgeFields;
    this.typeBeforeName = ef.indexOf('type') >= 0 && ef.indexOf('type') < ef.indexOf('name_or_index');
  }

  finish(fd: number): HeapSnapshot {
    if (this.state !== S.Done) {
      if (this.state === S.TopStart) this.fail('the file is empty');
      this.fail('the file is truncated');
    }
    if (!this.meta) this.fail('no "snapshot" header');
    if (!this.sawNodes) this.fail('no "nodes" array');
    if (!this.sawEdges) this.fail('no "edges" array');
    if (!this.sawStrings) this.fail('no "strings" array');
    if (this.edgeSum !== this.edgeCount) this.fail(`the nodes' edge counts add up to ${this.edgeSum}, the header says ${this.edgeCount}`);
    const S_ = this.strings.count;
    const meta = this.meta;
    const indexTypes = this.indexTypes;
    if (this.lean) {
      if (this.maxNodeName >= S_) this.fail(`a node names string ${this.maxNodeName}, there are ${S_}`);
      if (this.maxEdgeName >= S_) this.fail(`an edge names string ${this.maxEdgeName}, there are ${S_}`);
    } else {
      const nodeName = this.nodeName;
      for (let n = 0; n < this.nodeCount; n++) if (nodeName[n] >= S_) this.fail(`node ${n} names string ${nodeName[n]}, there are ${S_}`);
      const edgeTo = this.edgeTo;
      const edgeName = this.edgeName;
      for (let e = 0; e < this.edgeCount; e++) {
        if (!indexTypes[edgeTo[e] >>> 29] && edgeName[e] >= S_) this.fail(`edge ${e} names string ${edgeName[e]}, there are ${S_}`);
      }
    }
    return new HeapSnapshot({
      path: this.path,
      fd,
      size: this.size,
      meta,
      nodeCount: this.nodeCount,
      edgeCount: this.edgeCount,
      nodeType: this.nodeType,
      nodeName: this.nodeName,
      nodesOffset: this.nodesOffset,
      edgesOffset: this.edgesOffset,
      locationsOffset: this.locationsOffset,
      nodeSelf: this.nodeSelf,
      firstEdge: this.firstEdge,
      edgeTo: this.edgeTo,
      edgeName: this.edgeName,
      strBase: Math.max(0, this.strings.base),
      // exact-size copies: the doubled capacity would stay live through the dominator tree's peak
      strMarks: this.strings.marks.slice(0, Math.ceil(S_ / STRING_STEP)),
      stringCount: S_,
      found: this.found,
    });
  }
}
