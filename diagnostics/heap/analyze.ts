/**
 * Heap analysis: parse the snapshot, compute retained sizes and shortest retainer paths, and report
 * `ServerResponse` / `IncomingMessage` / `Socket` objects of closed connections that are still reachable,
 * and responses with bytes queued, grouped by the place in the program that holds them (holder.ts).
 */
import { readHeapSnapshot } from './parse.js';
import {
  analyzeGraph,
  dominatorsInPostorder,
  edgeCounts,
  firstEdgeOf,
  isReachable,
  postorder,
  retainedAndIdom,
  shortestParents,
  treeOf,
  workWords,
  type EdgeCounts,
  type Tree,
} from './dominators.js';
import { closureLabel, readablePath, retainerChain, retainerPath, scriptOf, type Step } from './paths.js';
import { holderOf, type Holder } from './holder.js';
import { Connections, WANTED_STRINGS } from './connections.js';
import { canRelease, HeapSnapshot, NONE, release } from './snapshot.js';
import type { ConstructorStat, HeapFinding, HeapFindingKind, HeapSummary, Severity } from '../report/types.js';

/** A response with at least this many bytes queued is reported (`queued_write_buffer`). */
export const QUEUED_BYTES_THRESHOLD = 64 * 1024;
/** Other paths kept per finding (`alsoVia`), most objects first. */
const MAX_ALSO_VIA = 20;
/** Without a holder, findings are grouped by the end of their retainer path: 4 objects and the 3 edges between them. */
const GROUP_BY_ENTRIES = 7;

/** One finding being built: the objects of one kind held at one place, and the distinct paths they were reached by. */
interface Group {
  finding: HeapFinding;
  variants: Map<string, { count: number; steps: Step[]; holder: Holder | null; rawPath: string[] }>;
}

/** The holder as a reader names it: a closure's step, or a collection with what holds it (`module scope … → cache → Map`). */
function holderLabel(path: string[], h: Holder): string {
  return h.closure ? path[h.at] : path.slice(Math.max(0, h.at - 2), h.at + 1).join(' → ');
}

export interface HeapAnalysis {
  summary: HeapSummary;
  findings: HeapFinding[];
}

export interface HeapAnalyzeOptions {
  onProgress?: (phase: string, done: number, total: number) => void;
  /** Constructors listed in the summary (default 25). */
  topConstructors?: number;
  /**
   * Release the columns a phase does not need and read them back later (default: where the runtime can free
   * memory at once, see canRelease); false keeps them, as on Node 20. For tests.
   */
  release?: boolean;
  /** Called at the end of each phase with the bytes of the arrays the analysis holds then. For tests. */
  onHeld?: (phase: string, bytes: number) => void;
}

export function analyzeHeapFile(path: string, options: HeapAnalyzeOptions = {}): HeapAnalysis {
  const snap = readHeapSnapshot(path, {
    wanted: WANTED_STRINGS,
    lean: true,
    onProgress: options.onProgress ? (r, t) => options.onProgress!('reading', r, t) : undefined,
  });
  try {
    return analyzeLean(snap, options);
  } finally {
    snap.close();
  }
}

/** String indices of the constructors whose objects can become findings. */
function candidateNames(snap: HeapSnapshot): Set<number> {
  const out = new Set<number>();
  for (const s of ['ServerResponse', 'IncomingMessage', 'Socket', 'TLSSocket']) {
    const i = snap.stringIndex(s);
    if (i !== NONE) out.add(i);
  }
  return out;
}

/**
 * The analysis of a snapshot read with `lean: true` (the CLI's way), in the least memory: the graph (edge
 * targets, first edges, node types) stays, node names, self sizes and edge names are read back from the file
 * only when needed, and three work arrays sized once (A and C: one word per node; W: one per edge or two per
 * node, whichever is more) carry everything else in turn:
 *   1. shortest paths: A parents, C queue; kept only for the objects that can become findings (and the
 *      objects on their paths);
 *   2. dominators: A postorder then dominators, C + W predecessor lists (dominators.ts);
 *   3. retained sizes (W, as Float64) and immediate dominators (A, in place), from a second postorder in C and
 *      the self sizes read back; kept for the findings' objects;
 *   4. retained size by constructor: node names read back into C, the dominator tree's child lists in the
 *      edge targets' array, the constructor keys in the first edges' array;
 *   5. the columns read back into the arrays now free (self sizes into A, edge names into W, edge targets and
 *      first edges into their own), and the findings built as from a whole snapshot.
 * Where the runtime can free an array at once (canRelease: Node >= 21), what a phase does not need is released
 * and read back later: node types and first edges during 2 (the first edges as one byte per node while the
 * predecessor lists are built), the predecessor lists before 3, the first edges again after 3's postorder, and
 * in 5 the work arrays, self sizes staying in the file (HeapSnapshot.selfSize). No phase then holds the graph
 * and all three work arrays at once (0.55x the file at the peak instead of 0.62x, on Node 24).
 * The results are the same as analyzeHeap's on a whole snapshot (test/heap-analyze.test.ts checks it).
 */
function analyzeLean(snap: HeapSnapshot, options: HeapAnalyzeOptions): HeapAnalysis {
  const N = snap.nodeCount;
  const root = 0;
  const progress = options.onProgress;
  // free what a phase does not need and read it back later; only where memory can be given back at once
  // (a dropped array waits for a garbage collection that may not come before the peak)
  const releasing = (options.release ?? canRelease) && canRelease;
  const A = new Uint32Array(N);
  const C = new Uint32Array(N + 1);
  let W = new Uint32Array(workWords(snap));
  let counts: EdgeCounts | null = null;
  let extra: Uint32Array[] = [];
  const held = (phase: string): void => options.onHeld?.(phase, heldBytes(snap, [A, C, W, counts?.counts, counts?.over, ...extra]));

  // 1. shortest paths, for the candidates only
  shortestParents(snap, root, A, C);
  const want = candidateNames(snap);
  const objectType = snap.T.object;
  const candidates: number[] = [];
  snap.scanNodes((n, name) => {
    if (snap.nodeType[n] === objectType && (n === root || A[n] !== NONE) && want.has(name)) candidates.push(n);
  });
  const parents = new Map<number, number>();
  const complete = new Set<number>(); // nodes whose whole way up is kept
  for (const c of candidates) {
    const walked: number[] = [];
    let v = c;
    let whole = false;
    for (let hops = 0; hops <= 100_001; hops++) {
      if (v === NONE) {
        whole = true;
        break;
      }
      if (complete.has(v)) {
        whole = true;
        break;
      }
      const p = A[v];
      parents.set(v, p);
      walked.push(v);
      v = p;
    }
    if (whole) for (const w of walked) complete.add(w);
  }
  held('paths');

  // 2. dominators; when releasing, node types are read back in 3, and the first edges are kept as counts
  // (one byte per node) while the predecessor lists are built
  if (releasing) {
    release(snap.nodeType);
    snap.nodeType = new Uint8Array(0);
  }
  const { count } = dominatorsInPostorder(
    snap,
    root,
    A,
    C,
    W,
    progress,
    releasing
      ? () => {
          counts = edgeCounts(snap.firstEdge, N);
          release(snap.firstEdge);
          snap.firstEdge = new Uint32Array(0);
          held('predecessors');
          return counts;
        }
      : undefined,
  );
  held('dominators');

  // 3. retained sizes and immediate dominators
  if (releasing) {
    // the predecessor lists' pages go back; the retained sizes take fresh ones
    release(W);
    W = new Uint32Array(workWords(snap));
    snap.firstEdge = firstEdgeOf(counts!, N);
    release(counts!.counts);
    counts = null;
  }
  postorder(snap, root, null, C);
  if (releasing) {
    // read back in 5
    release(snap.firstEdge);
    snap.firstEdge = new Uint32Array(0);
  }
  const retained = new Float64Array(W.buffer, 0, N);
  const types = releasing ? new Uint8Array(N) : null;
  snap.scanNodes((n, _name, self, _edges, type) => {
    retained[n] = self;
    if (types) types[n] = type;
  });
  if (types) snap.nodeType = types;
  retainedAndIdom(A, C, count, retained);
  const keptRetained = new Map<number, number>();
  const keptIdom = new Map<number, number>();
  for (const c of candidates) {
    keptRetained.set(c, retained[c]);
    const d = A[c];
    keptIdom.set(c, d);
    if (d !== NONE) keptIdom.set(d, A[d]);
  }
  const totalSize = retained[root];
  progress?.('paths', 4, 5);
  held('retained');

  // 4. by constructor
  const S = snap.stringCount;
  const dense = snap.firstEdge.length >= S ? snap.firstEdge.subarray(0, S) : new Uint32Array(S);
  const stats = new ConstructorStats(snap, dense);
  snap.scanNodes((n, name, self) => {
    C[n] = name;
    stats.visit(n, name, self, n === root || A[n] !== NONE);
  });
  const lists = snap.edgeTo.length >= 2 * N ? snap.edgeTo : new Uint32Array(2 * N);
  extra = [dense, lists];
  const byCtor = stats.finish(A, retained, lists.subarray(0, N), lists.subarray(N, 2 * N), C, options.topConstructors ?? 25);
  held('constructors');

  // 5. the columns back, then the findings; when releasing, self sizes stay in the file (read per node)
  snap.nodeName = C.subarray(0, N);
  if (releasing) {
    release(dense); // its own array: the first edges were released in 3
    if (lists !== snap.edgeTo) release(lists);
    extra = [];
    release(A);
    release(W);
    snap.loadColumns({ firstEdge: new Uint32Array(N + 1), edgeTo: snap.edgeTo, edgeName: new Uint32Array(snap.edgeCount), selfMarks: true });
  } else {
    snap.loadColumns({ nodeSelf: A, firstEdge: snap.firstEdge, edgeTo: snap.edgeTo, edgeName: W });
  }
  progress?.('paths', 5, 5);
  held('findings');
  const tree: Tree = {
    parentOf: (n) => parents.get(n) ?? NONE,
    idomOf: (n) => keptIdom.get(n) ?? NONE,
    retainedOf: (n) => keptRetained.get(n) ?? 0,
  };
  return findingsOf(snap, tree, candidates, totalSize, byCtor);
}

/** Bytes of the distinct buffers behind the snapshot's columns and `more` (a released buffer counts 0). */
function heldBytes(snap: HeapSnapshot, more: (ArrayBufferView | null | undefined)[]): number {
  const seen = new Set<ArrayBufferLike>();
  let bytes = 0;
  for (const a of [...snap.columns(), ...more]) {
    if (!a || seen.has(a.buffer)) continue;
    seen.add(a.buffer);
    bytes += a.buffer.byteLength;
  }
  return bytes;
}

/** The analysis of a whole snapshot in memory (readHeapSnapshot without `lean`). */
export function analyzeHeap(snap: HeapSnapshot, options: HeapAnalyzeOptions = {}): HeapAnalysis {
  const graph = analyzeGraph(snap, { onProgress: options.onProgress });
  const want = candidateNames(snap);
  const candidates: number[] = [];
  for (let n = 0; n < snap.nodeCount; n++) {
    if (snap.nodeType[n] === snap.T.object && isReachable(graph, n) && want.has(snap.nodeName[n])) candidates.push(n);
  }
  // the findings first: the dominator-tree walk reuses the search's arrays
  const tree = treeOf(graph);
  const S = snap.stringCount;
  const result = findingsOf(snap, tree, candidates, graph.retained[0], []);
  const stats = new ConstructorStats(snap, graph.spare.length >= S ? graph.spare.subarray(0, S) : new Uint32Array(S));
  for (let n = 0; n < snap.nodeCount; n++) stats.visit(n, snap.nodeName[n], snap.nodeSelf[n], n === 0 || graph.idom[n] !== NONE);
  result.summary.byConstructor = stats.finish(graph.idom, graph.retained, graph.parent, graph.scratch, snap.nodeName, options.topConstructors ?? 25);
  return result;
}

/** Findings about the candidates (reachable objects named as one of candidateNames, in node order). */
function findingsOf(snap: HeapSnapshot, graph: Tree, candidates: number[], totalSize: number, byCtor: ConstructorStat[]): HeapAnalysis {
  const conn = new Connections(snap);

  const groups = new Map<string, Group>();
  const names = (v: string): number => conn.str(v);
  const add = (kind: HeapFindingKind, severity: Severity, node: number, detail: string, queued?: number): void => {
    const readable = readablePath(snap, retainerChain(graph, node), names);
    // group by the place in the program that holds the object (holder.ts); without one, by the last hops of
    // the readable path, so objects held the same way (one array, one Map) form one finding
    const holder = holderOf(snap, readable, names);
    const where = holder
      ? holder.key
      : readable
          .slice(-GROUP_BY_ENTRIES)
          .map((x) => x.key)
          .join('\u0000');
    const key = `${kind}\u0000${where}`;
    let g = groups.get(key);
    if (!g) {
      g = { finding: { kind, severity, count: 0, retainedSize: 0, path: [], rawPath: [], ids: [], detail }, variants: new Map() };
      if (queued !== undefined) g.finding.queuedBytes = 0;
      groups.set(key, g);
    }
    // the same holder reached another way: one more path under the same finding (a table's own key, the edge
    // out of a collection holder, is not another way: a thousand sessions in one object are one path)
    const pathKey = readable.map((x, i) => (holder && !holder.closure && i === holder.at + 1 ? '(entry)' : x.key)).join('\u0000');
    let v = g.variants.get(pathKey);
    if (!v) {
      v = { count: 0, steps: readable, holder, rawPath: retainerPath(snap, graph, node) };
      g.variants.set(pathKey, v);
    }
    v.count++;
    const f = g.finding;
    f.count++;
    f.retainedSize += graph.retainedOf(node);
    if (queued !== undefined) f.queuedBytes = (f.queuedBytes ?? 0) + queued;
    if (severity === 'error') f.severity = 'error';
    if (f.ids.length < 5) f.ids.push(node); // node indices until the ids are read back below
  };

  const counts = {
    responses: { total: 0, closed: 0 },
    requests: { total: 0, closed: 0 },
    sockets: { total: 0, closed: 0 },
  };
  let queuedTotal = 0;
  const objectType = snap.T.object;
  const sRes = conn.str('ServerResponse');
  const sReq = conn.str('IncomingMessage');
  const sSock = conn.str('Socket');
  const sTls = conn.str('TLSSocket');
  for (const n of candidates) {
    if (snap.nodeType[n] !== objectType) continue;
    const name = snap.nodeName[n];
    if (name === sRes) {
      counts.responses.total++;
      const closed = conn.responseClosed(n);
      if (closed) {
        counts.responses.closed++;
        add('retained_response', 'error', n, 'ServerResponse of a closed connection, still reachable');
      }
      const q = conn.queuedBytes(n);
      queuedTotal += q;
      if (q >= QUEUED_BYTES_THRESHOLD) {
        add(
          'queued_write_buffer',
          closed ? 'error' : 'warning',
          n,
          closed ? 'bytes queued on a response whose client is gone' : 'bytes queued on a response the client does not read',
          q,
        );
      }
    } else if (name === sReq) {
      counts.requests.total++;
      if (conn.requestClosed(n)) {
        counts.requests.closed++;
        add('retained_request', 'warning', n, 'IncomingMessage of a closed connection, still reachable');
      }
    } else if ((name === sSock || name === sTls) && conn.isSocket(n)) {
      counts.sockets.total++;
      if (conn.socketClosed(n)) {
        counts.sockets.closed++;
        // a closed socket held only by its own handle, until the next GC collects both, is not a leak
        if (!heldOnlyByHandle(snap, graph, conn, n)) add('retained_socket', 'warning', n, 'Socket that is closed or destroyed, still reachable');
      }
    }
  }
  const all = [...groups.values()];
  const variants = all.map((g) => [...g.variants.values()].sort((a, b) => b.count - a.count || a.steps.length - b.steps.length));
  const named = nameSteps(snap, conn, variants.flat().map((v) => v.steps));
  let at = 0;
  for (let i = 0; i < all.length; i++) {
    const f = all[i].finding;
    const paths = variants[i].map((v) => ({ count: v.count, path: named[at++], rawPath: v.rawPath, holder: v.holder }));
    const [main, ...others] = paths;
    f.path = main.path;
    f.rawPath = main.rawPath;
    if (main.holder) f.holder = holderLabel(main.path, main.holder);
    if (others.length > 0) {
      f.countOnPath = main.count;
      f.alsoVia = others.slice(0, MAX_ALSO_VIA).map(({ count, path, rawPath }) => ({ count, path, rawPath }));
    }
  }

  const ids = snap.nodeIds(all.flatMap((g) => g.finding.ids));
  for (const { finding: g } of all) g.ids = g.ids.map((n) => ids.get(n) ?? -1).filter((id) => id >= 0);
  const order: Record<HeapFindingKind, number> = { retained_response: 0, queued_write_buffer: 1, retained_request: 2, retained_socket: 3 };
  const findings = all.map((g) => g.finding).sort(
    (a, b) => (a.severity === b.severity ? 0 : a.severity === 'error' ? -1 : 1) || order[a.kind] - order[b.kind] || b.retainedSize - a.retainedSize,
  );

  const summary: HeapSummary = {
    file: snap.path,
    fileSize: snap.size,
    nodes: snap.nodeCount,
    edges: snap.edgeCount,
    totalSize,
    ...counts,
    queuedBytes: queuedTotal,
    byConstructor: byCtor,
  };
  return { summary, findings };
}

/**
 * A closed socket whose only retainer is its own native handle (`Node / TCPSocketWrap` → `TCP` →
 * `owner_symbol` → `Socket`): the handle is closed and both go at the next GC.
 */
function heldOnlyByHandle(snap: HeapSnapshot, graph: Tree, conn: Connections, sock: number): boolean {
  const d = graph.idomOf(sock);
  if (d === NONE) return false;
  if (!conn.isClass(d, 'TCP') && !conn.isClass(d, 'Pipe') && !conn.isClass(d, 'TLSWrap')) return false;
  const dd = graph.idomOf(d);
  return dd !== NONE && snap.nodeType[dd] === snap.T.native && /^Node \/ \w*Wrap$/.test(snap.name(dd));
}

/**
 * Fill in the readable paths: each closure's `file:line:column` (one scan of the snapshot's locations) and
 * variables, and the file of each scope a path starts from (the script of a closure that uses that scope).
 */
function nameSteps(snap: HeapSnapshot, conn: Connections, steps: Step[][]): string[][] {
  const names = (v: string): number => conn.str(v);
  const closures = new Set<number>();
  const scopes = new Set<number>();
  for (const list of steps) {
    for (const st of list) {
      if (st.closure !== undefined) closures.add(st.closure);
      if (st.scope !== undefined) scopes.add(st.scope);
    }
  }
  const locs = snap.locations(closures);
  const scopeFile = new Map<number, string>();
  if (scopes.size) {
    // a closure whose context is the scope: one pass over the closures' edges
    const sContext = names('context');
    const closureType = snap.T.closure;
    for (let v = 0; v < snap.nodeCount && scopeFile.size < scopes.size; v++) {
      if (snap.nodeType[v] !== closureType) continue;
      const e = snap.findEdge(v, sContext);
      if (e === NONE) continue;
      const c = snap.edgeTarget(e);
      if (!scopes.has(c) || scopeFile.has(c)) continue;
      const f = scriptOf(snap, v, names);
      if (f) scopeFile.set(c, f);
    }
  }
  const native = names('system / NativeContext');
  return steps.map((list) =>
    list.map((st) => {
      if (st.closure !== undefined) return closureLabel(snap, st.closure, locs.get(st.closure), names);
      if (st.scope !== undefined) {
        const prev = snap.findEdge(st.scope, names('previous'));
        const top = prev !== NONE && native !== NONE && snap.nodeName[snap.edgeTarget(prev)] === native;
        const file = scopeFile.get(st.scope);
        return `${top ? 'module scope' : 'function scope'}${file ? ` ${file}` : ''}`;
      }
      return st.label;
    }),
  );
}

/**
 * Self and retained size per constructor (DevTools' "Summary" view). A node's retained size counts for its
 * constructor only when no node above it in the dominator tree has the same constructor (DevTools' rule), so
 * that nested objects of one class count once and no total exceeds the heap. `visit` is called for every
 * node in order (from arrays or from a pass over the file); `finish` walks the dominator tree depth first,
 * keeping per constructor how many nodes of it are on the current branch. Its arrays are lent by the caller
 * (arrays that are free by then), so the walk costs no memory on top of the peak.
 */
class ConstructorStats {
  /** key → string index, or -1 - type */
  private readonly keyName: number[] = [];
  private readonly typeKeys = new Uint32Array(256).fill(NONE);
  private readonly count: number[] = [];
  private readonly self: number[] = [];

  /** `dense`: one word per string (string index → key), overwritten. */
  constructor(
    private readonly snap: HeapSnapshot,
    private readonly dense: Uint32Array,
  ) {
    dense.fill(NONE);
  }

  private key(t: number, name: number): number {
    const T = this.snap.T;
    let k: number;
    if (t === T.object || t === T.native) {
      k = this.dense[name];
      if (k === NONE) {
        k = this.dense[name] = this.keyName.length;
        this.keyName.push(name);
        this.count.push(0);
        this.self.push(0);
      }
    } else {
      k = this.typeKeys[t];
      if (k === NONE) {
        k = this.typeKeys[t] = this.keyName.length;
        this.keyName.push(-1 - t);
        this.count.push(0);
        this.self.push(0);
      }
    }
    return k;
  }

  /** Every node, in order; `reachable`: the root or a node with an immediate dominator. */
  visit(n: number, name: number, selfSize: number, reachable: boolean): void {
    const t = this.snap.nodeType[n];
    const k = this.key(t, name);
    if (t === this.snap.T.synthetic || !reachable) return;
    this.count[k]++;
    this.self[k] += selfSize;
  }

  /** `firstChild`, `next`: free arrays of one word per node; `nodeName`: every node's name. */
  finish(idom: Uint32Array, nodeRetained: Float64Array, firstChild: Uint32Array, next: Uint32Array, nodeName: Uint32Array, top: number): ConstructorStat[] {
    const snap = this.snap;
    const T = snap.T;
    const typeKey = new Map<number, string>([
      [T.array, '(array)'],
      [T.string, '(string)'],
      [T.consString, '(concatenated string)'],
      [T.slicedString, '(sliced string)'],
      [T.code, '(compiled code)'],
      [T.closure, '(closure)'],
      [T.regexp, 'RegExp'],
      [T.number, '(number)'],
      [T.hidden, '(system)'],
      [T.symbol, 'Symbol'],
      [T.bigint, 'BigInt'],
      [T.objectShape, '(object shape)'],
    ]);
    const N = snap.nodeCount;
    const nodeType = snap.nodeType;
    const objectType = T.object;
    const nativeType = T.native;
    const dense = this.dense;
    const typeKeys = this.typeKeys;
    const keyAt = (n: number): number => {
      const t = nodeType[n];
      return t === objectType || t === nativeType ? dense[nodeName[n]] : typeKeys[t];
    };
    const K = this.keyName.length;
    const retained = new Float64Array(K);
    const synthetic = T.synthetic;
    // children lists of the dominator tree: first child in `firstChild`, next sibling in `next`
    firstChild.fill(NONE, 0, N);
    for (let n = N - 1; n >= 0; n--) {
      const d = idom[n];
      if (d === NONE) continue;
      next[n] = firstChild[d];
      firstChild[d] = n;
    }
    const onBranch = new Uint32Array(K);
    const EXIT = 0x80000000;
    let stack = new Uint32Array(1 << 16);
    let sp = 0;
    stack[sp++] = 0;
    while (sp > 0) {
      const item = stack[--sp];
      if (item & EXIT) {
        const v = item & 0x7fffffff;
        if (nodeType[v] !== synthetic) onBranch[keyAt(v)]--;
        continue;
      }
      const v = item;
      if (nodeType[v] !== synthetic) {
        const k = keyAt(v);
        if (onBranch[k] === 0) retained[k] += nodeRetained[v];
        onBranch[k]++;
      }
      let need = sp + 1;
      for (let c = firstChild[v]; c !== NONE; c = next[c]) need++;
      if (need > stack.length) {
        const bigger = new Uint32Array(Math.max(need, stack.length * 2));
        bigger.set(stack.subarray(0, sp));
        stack = bigger;
      }
      stack[sp++] = (v | EXIT) >>> 0;
      for (let c = firstChild[v]; c !== NONE; c = next[c]) stack[sp++] = c;
    }
    const agg = new Map<number, { count: number; self: number; retained: number }>();
    for (let k = 0; k < K; k++) if (this.count[k] > 0) agg.set(this.keyName[k], { count: this.count[k], self: this.self[k], retained: retained[k] });
    return [...agg.entries()]
      .sort((x, y) => y[1].retained - x[1].retained)
      .slice(0, top)
      .map(([k, a]) => ({
        name: k >= 0 ? snap.string(k) || '(anonymous)' : (typeKey.get(-1 - k) ?? `(${snap.meta.nodeTypes[-1 - k] ?? 'unknown'})`),
        count: a.count,
        selfSize: a.self,
        retainedSize: a.retained,
      }));
  }
}
