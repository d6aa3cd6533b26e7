/**
 * Heap analysis: parse the snapshot, compute retained sizes and shortest retainer paths, and report
 * `ServerResponse` / `IncomingMessage` / `Socket` objects of closed connections that are still reachable,
 * and responses with bytes queued, grouped by retainer path.
 */
import { readHeapSnapshot } from './parse.js';
import { analyzeGraph, isReachable, type Graph } from './dominators.js';
import { retainerPath } from './paths.js';
import { Connections, WANTED_STRINGS } from './connections.js';
import { HeapSnapshot, NONE } from './snapshot.js';
import type { ConstructorStat, HeapFinding, HeapFindingKind, HeapSummary, Severity } from '../report/types.js';

/** A response with at least this many bytes queued is reported (`queued_write_buffer`). */
export const QUEUED_BYTES_THRESHOLD = 64 * 1024;
/** Findings are grouped by the end of their retainer path: 4 objects and the 3 edges between them. */
const GROUP_BY_ENTRIES = 7;

export interface HeapAnalysis {
  summary: HeapSummary;
  findings: HeapFinding[];
}

export interface HeapAnalyzeOptions {
  onProgress?: (phase: string, done: number, total: number) => void;
  /** Constructors listed in the summary (default 25). */
  topConstructors?: number;
}

export function analyzeHeapFile(path: string, options: HeapAnalyzeOptions = {}): HeapAnalysis {
  const snap = readHeapSnapshot(path, {
    wanted: WANTED_STRINGS,
    onProgress: options.onProgress ? (r, t) => options.onProgress!('reading', r, t) : undefined,
  });
  try {
    return analyzeHeap(snap, options);
  } finally {
    snap.close();
  }
}

export function analyzeHeap(snap: HeapSnapshot, options: HeapAnalyzeOptions = {}): HeapAnalysis {
  const graph = analyzeGraph(snap, { onProgress: options.onProgress });
  const conn = new Connections(snap);

  const groups = new Map<string, HeapFinding>();
  const add = (kind: HeapFindingKind, severity: Severity, node: number, detail: string, queued?: number): void => {
    const path = retainerPath(snap, graph, node);
    // group by the last three hops: objects held the same way (one array, one kind of closure) form one
    // finding even when the rest of their paths differ (the links of a timer list, for one)
    const key = `${kind}\u0000${path.slice(-GROUP_BY_ENTRIES).join('\u0000')}`;
    let g = groups.get(key);
    if (!g) {
      g = { kind, severity, count: 0, retainedSize: 0, path, ids: [], detail };
      if (queued !== undefined) g.queuedBytes = 0;
      groups.set(key, g);
    }
    g.count++;
    g.retainedSize += graph.retained[node];
    if (queued !== undefined) g.queuedBytes = (g.queuedBytes ?? 0) + queued;
    if (severity === 'error') g.severity = 'error';
    if (g.ids.length < 5) g.ids.push(node); // node indices until the ids are read back below
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
  for (let n = 0; n < snap.nodeCount; n++) {
    if (snap.nodeType[n] !== objectType || !isReachable(graph, n)) continue;
    const name = snap.nodeName[n];
    if (name === NONE) continue;
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
        add('retained_socket', 'warning', n, 'Socket that is closed or destroyed, still reachable');
      }
    }
  }

  const ids = snap.nodeIds([...groups.values()].flatMap((g) => g.ids));
  for (const g of groups.values()) g.ids = g.ids.map((n) => ids.get(n) ?? -1).filter((id) => id >= 0);
  const order: Record<HeapFindingKind, number> = { retained_response: 0, queued_write_buffer: 1, retained_request: 2, retained_socket: 3 };
  const findings = [...groups.values()].sort(
    (a, b) => (a.severity === b.severity ? 0 : a.severity === 'error' ? -1 : 1) || order[a.kind] - order[b.kind] || b.retainedSize - a.retainedSize,
  );

  const summary: HeapSummary = {
    file: snap.path,
    fileSize: snap.size,
    nodes: snap.nodeCount,
    edges: snap.edgeCount,
    totalSize: graph.retained[0],
    ...counts,
    queuedBytes: queuedTotal,
    byConstructor: byConstructor(snap, graph, options.topConstructors ?? 25),
  };
  return { summary, findings };
}

/**
 * Self and retained size per constructor (DevTools' "Summary" view). An object whose immediate dominator has
 * the same class name is left out of the retained sum, so nested objects of one class count once.
 */
function byConstructor(snap: HeapSnapshot, graph: Graph, top: number): ConstructorStat[] {
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
  // keys: string index for objects and natives, -1 - type for the others
  const agg = new Map<number, { count: number; self: number; retained: number }>();
  const keyOf = (n: number): number => {
    const t = snap.nodeType[n];
    if (t === T.object || t === T.native) return snap.nodeName[n];
    return -1 - t;
  };
  for (let n = 0; n < snap.nodeCount; n++) {
    const t = snap.nodeType[n];
    if (t === T.synthetic || !isReachable(graph, n)) continue;
    const k = keyOf(n);
    let a = agg.get(k);
    if (!a) {
      a = { count: 0, self: 0, retained: 0 };
      agg.set(k, a);
    }
    a.count++;
    a.self += snap.nodeSelf[n];
    const d = graph.idom[n];
    if (d === NONE || keyOf(d) !== k) a.retained += graph.retained[n];
  }
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
