/**
 * Shortest retainer paths, from the breadth-first search parents computed in dominators.ts: walking them
 * back from an object gives a shortest path from a GC root to it.
 */
import { HeapSnapshot, NONE, TO_MASK } from './snapshot.js';
import type { Graph } from './dominators.js';

/** The edge from `from` to `to` (first non-weak one), or NONE. */
export function edgeBetween(snap: HeapSnapshot, from: number, to: number): number {
  const weak = snap.E.weak;
  for (let e = snap.firstEdge[from], end = snap.firstEdge[from + 1]; e < end; e++) {
    const word = snap.edgeTo[e];
    if ((word & TO_MASK) === to && word >>> 29 !== weak) return e;
  }
  return NONE;
}

/** Display label of a node in a path. */
export function nodeLabel(snap: HeapSnapshot, node: number): string {
  const t = snap.nodeType[node];
  const T = snap.T;
  if (snap.stringType[t]) return '(string)';
  if (t === T.number) return '(number)';
  if (t === T.code) return '(code)';
  if (t === T.array) {
    const n = snap.name(node);
    return n.startsWith('(') ? n : '(array)';
  }
  if (t === T.closure) {
    const n = snap.name(node);
    return n ? `${n}()` : '(anonymous)()';
  }
  if (t === T.regexp) return 'RegExp';
  if (t === T.symbol) return 'Symbol';
  if (t === T.bigint) return 'BigInt';
  const n = snap.name(node);
  return n || `(${snap.typeName(node)})`;
}

/**
 * The path from a GC root to `node`, nodes and edges alternating: `[node, edge, node, …, node]`, without
 * V8's synthetic root. Element indices are written `[]` so that paths through the same array compare equal.
 */
export function retainerPath(snap: HeapSnapshot, graph: Graph, node: number, maxHops = 40): string[] {
  if (node !== 0 && graph.parent[node] === NONE) return [];
  const chain: number[] = [];
  for (let v = node; v !== NONE && chain.length <= maxHops * 4; v = graph.parent[v]) chain.push(v);
  chain.reverse();
  if (chain.length > 1 && chain[0] === 0) chain.shift(); // V8's synthetic root ""
  const out: string[] = [];
  for (let i = 0; i < chain.length; i++) {
    if (i > 0) {
      const e = edgeBetween(snap, chain[i - 1], chain[i]);
      out.push(e === NONE ? '?' : normalizeEdge(snap, e));
    }
    out.push(nodeLabel(snap, chain[i]));
  }
  if (chain.length > maxHops) {
    // keep the root end and the object end
    const head = out.slice(0, 7);
    const tail = out.slice(out.length - 2 * 16 + 1);
    return [...head, '…', ...tail];
  }
  return out;
}

function normalizeEdge(snap: HeapSnapshot, e: number): string {
  const t = snap.edgeType(e);
  if (t === snap.E.element) return '[]';
  if (snap.indexEdge[t]) return '()';
  return snap.edgeLabel(e);
}
