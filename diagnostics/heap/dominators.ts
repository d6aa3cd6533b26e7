/**
 * Dominator tree, retained sizes and shortest retainer paths, on typed arrays.
 *
 * Dominators: Cooper, Harvey & Kennedy, "A Simple, Fast Dominance Algorithm" (2001) — the iterative
 * algorithm over reverse postorder, every pass over every node until nothing changes (heap graphs settle in
 * a handful of passes). A worklist of "affected" nodes, as some tools use, is not sound: a node's
 * immediate dominator can change when a dominator further up its predecessors' chains changes.
 * Weak edges retain nothing and are ignored, and so are shortcut edges other than the root's (DevTools' rule). Nodes that only weak edges reach are unreachable: they have
 * no dominator (NONE) and their retained size is their self size.
 *
 * Shortest paths: a breadth-first search from the root over non-weak edges records the node each node was
 * first reached from.
 *
 * Memory: the functions below work in arrays their caller owns, so that analyze.ts can lend them the
 * buffers of columns it reads back later (see analyzeHeapFile): two arrays of one word per node and one of
 * at least one word per edge carry the postorder, the predecessor lists, the dominators, the retained sizes
 * and the immediate dominators one after the other.
 */
import { InputError } from './input-error.js';
import { HeapSnapshot, NONE, TO_MASK } from './snapshot.js';

export interface Graph {
  /** Immediate dominator of each node (node index), NONE for the root and for unreachable nodes. */
  idom: Uint32Array;
  /** Retained size of each node in bytes. */
  retained: Float64Array;
  /** The node each node was first reached from in a breadth-first search from the root; NONE for the root and unreachable nodes. */
  parent: Uint32Array;
  /** Nodes reachable from the root (the root included). */
  reachable: number;
  /** Passes the dominator iteration took. */
  passes: number;
  /** A free array of one word per node (the search queue's), for later walks. */
  scratch: Uint32Array;
  /** Free words left over in the predecessor array after the retained sizes (maybe empty), for later walks. */
  spare: Uint32Array;
}

export interface GraphOptions {
  root?: number;
  onProgress?: (phase: string, done: number, total: number) => void;
}

/** A growable stack of words. */
class Stack {
  data = new Uint32Array(1 << 16);
  size = 0;
  push(v: number): void {
    if (this.size === this.data.length) {
      const d = new Uint32Array(this.data.length * 2);
      d.set(this.data);
      this.data = d;
    }
    this.data[this.size++] = v;
  }
}

/** Whether an edge word counts: weak edges retain nothing, nor do shortcut edges other than the root's. */
function skip(word: number, v: number, root: number, weak: number, shortcut: number): boolean {
  const t = word >>> 29;
  return t === weak || (t === shortcut && v !== root);
}

/**
 * Iterative depth-first search from the root over the edges that retain. Numbers the nodes in postorder:
 * `poOf[node]` (NONE when unreachable) and/or `order[po]`, whichever is given. Returns the number reached.
 * The order depends on the graph only, so a second search gives the same numbers as the first.
 */
export function postorder(snap: HeapSnapshot, root: number, poOf: Uint32Array | null, order: Uint32Array | null): number {
  const N = snap.nodeCount;
  const { firstEdge, edgeTo } = snap;
  const weak = snap.E.weak;
  const shortcut = snap.E.shortcut;
  const seen = new Uint8Array((N + 7) >>> 3);
  if (poOf) poOf.fill(NONE, 0, N);
  let count = 0;
  const nodes = new Stack();
  const edges = new Stack();
  nodes.push(root);
  edges.push(firstEdge[root]);
  seen[root >>> 3] |= 1 << (root & 7);
  while (nodes.size > 0) {
    const top = nodes.size - 1;
    const v = nodes.data[top];
    let e = edges.data[top];
    const end = firstEdge[v + 1];
    let pushed = false;
    for (; e < end; e++) {
      const word = edgeTo[e];
      if (skip(word, v, root, weak, shortcut)) continue;
      const w = word & TO_MASK;
      if (seen[w >>> 3] & (1 << (w & 7))) continue;
      seen[w >>> 3] |= 1 << (w & 7);
      edges.data[top] = e + 1;
      nodes.push(w);
      edges.push(firstEdge[w]);
      pushed = true;
      break;
    }
    if (!pushed) {
      nodes.size--;
      edges.size--;
      if (poOf) poOf[v] = count;
      if (order) order[count] = v;
      count++;
    }
  }
  return count;
}

/**
 * Each node's edge count in one byte, 255 meaning "the next of `over`" (the counts of 255 and more, in node
 * order): a fifth of `firstEdge`'s memory, for the passes that go through the nodes in order.
 */
export interface EdgeCounts {
  counts: Uint8Array;
  over: Uint32Array;
}

export function edgeCounts(firstEdge: Uint32Array, N: number): EdgeCounts {
  let k = 0;
  for (let v = 0; v < N; v++) if (firstEdge[v + 1] - firstEdge[v] >= 255) k++;
  const counts = new Uint8Array(N);
  const over = new Uint32Array(k);
  k = 0;
  for (let v = 0; v < N; v++) {
    const c = firstEdge[v + 1] - firstEdge[v];
    if (c >= 255) {
      counts[v] = 255;
      over[k++] = c;
    } else counts[v] = c;
  }
  return { counts, over };
}

/** `firstEdge` again from the counts. */
export function firstEdgeOf(ec: EdgeCounts, N: number): Uint32Array {
  const firstEdge = new Uint32Array(N + 1);
  const { counts, over } = ec;
  let sum = 0;
  let k = 0;
  for (let v = 0; v < N; v++) {
    const c = counts[v];
    firstEdge[v + 1] = sum += c === 255 ? over[k++] : c;
  }
  return firstEdge;
}

/**
 * Immediate dominators in postorder space (Cooper–Harvey–Kennedy), in three arrays the caller owns: `A` (one
 * word per node) holds each node's postorder number and then the dominators (`A[po]` = postorder number of
 * the immediate dominator, NONE for the root's slot and past the reachable ones); `C` (one word per node and
 * one more) and `W` (at least one word per edge) hold the predecessor lists, free again afterwards.
 */
export function dominatorsInPostorder(
  snap: HeapSnapshot,
  root: number,
  A: Uint32Array,
  C: Uint32Array,
  W: Uint32Array,
  progress?: (phase: string, done: number, total: number) => void,
  compact?: () => EdgeCounts | null,
): { count: number; rootPo: number; passes: number } {
  const N = snap.nodeCount;
  const { firstEdge, edgeTo } = snap;
  const weak = snap.E.weak;
  const shortcut = snap.E.shortcut;
  // 1. postorder numbers
  const count = postorder(snap, root, A, null);
  const rootPo = count - 1;
  progress?.('dominators', 1, 5);
  // the passes below go through the nodes in order: the caller may trade firstEdge for the counts here
  const ec = compact?.() ?? null;
  const cnt = ec ? ec.counts : null;
  const over = ec ? ec.over : new Uint32Array(0);

  // 2. predecessors in postorder space: C[t] … C[t + 1] - 1 index t's list in W. C[t + 1] is the end of t's
  // list; filling backwards from it leaves C[t + 1] at the start, and one shift puts the lists in place.
  C.fill(0, 0, count + 1);
  for (let v = 0, e = 0, k = 0; v < N; v++) {
    let end: number;
    if (cnt) {
      const c = cnt[v];
      end = e + (c === 255 ? over[k++] : c);
    } else {
      e = firstEdge[v];
      end = firstEdge[v + 1];
    }
    if (A[v] === NONE) {
      e = end;
      continue;
    }
    for (; e < end; e++) {
      const word = edgeTo[e];
      if (skip(word, v, root, weak, shortcut)) continue;
      C[A[word & TO_MASK] + 1]++;
    }
  }
  for (let i = 0; i < count; i++) C[i + 1] += C[i];
  const predCount = C[count];
  if (W.length < predCount) throw new Error('dominators: predecessor array too small');
  for (let v = 0, e = 0, k = 0; v < N; v++) {
    let end: number;
    if (cnt) {
      const c = cnt[v];
      end = e + (c === 255 ? over[k++] : c);
    } else {
      e = firstEdge[v];
      end = firstEdge[v + 1];
    }
    const po = A[v];
    if (po === NONE) {
      e = end;
      continue;
    }
    for (; e < end; e++) {
      const word = edgeTo[e];
      if (skip(word, v, root, weak, shortcut)) continue;
      W[--C[A[word & TO_MASK] + 1]] = po;
    }
  }
  for (let i = 0; i < count; i++) C[i] = C[i + 1];
  C[count] = predCount;
  progress?.('dominators', 2, 5);

  // 3. Cooper–Harvey–Kennedy, in postorder space; A is free again and holds the dominators
  const doms = A;
  doms.fill(NONE, 0, N);
  doms[rootPo] = rootPo;
  let changed = true;
  let passes = 0;
  // real heaps settle in a handful of passes; a crafted graph could take one per node
  const maxPasses = Math.max(100, Math.floor(2e10 / Math.max(1, predCount)));
  while (changed) {
    changed = false;
    if (++passes > maxPasses) throw new InputError(`${snap.path}: the dominator tree did not settle after ${maxPasses} passes`);
    for (let po = rootPo - 1; po >= 0; po--) {
      let newIdom = NONE;
      for (let p = C[po], end = C[po + 1]; p < end; p++) {
        let a = W[p];
        if (doms[a] === NONE) continue;
        if (newIdom === NONE) {
          newIdom = a;
          continue;
        }
        let b = newIdom;
        while (a !== b) {
          while (a < b) a = doms[a];
          while (b < a) b = doms[b];
        }
        newIdom = a;
        if (newIdom === rootPo) break;
      }
      if (newIdom !== NONE && doms[po] !== newIdom) {
        doms[po] = newIdom;
        changed = true;
      }
    }
  }
  doms[rootPo] = NONE;
  progress?.('dominators', 3, 5);
  return { count, rootPo, passes };
}

/**
 * Retained sizes and immediate dominators by node, from the dominators in postorder space (`A`) and the
 * postorder (`order`, which this destroys). `retained` holds each node's self size on entry and its retained
 * size on return (a dominator has a higher postorder number than what it dominates, so one pass adds each
 * node into its dominator). `A` is rewritten in place to hold the immediate dominator of each node (NONE for
 * the root and unreachable nodes): the values are moved along the cycles of the permutation, `order` marking
 * what has moved, so that no third array is needed.
 */
export function retainedAndIdom(A: Uint32Array, order: Uint32Array, count: number, retained: Float64Array): void {
  const rootPo = count - 1;
  for (let po = 0; po < rootPo; po++) retained[order[A[po]]] += retained[order[po]];
  for (let po = 0; po < rootPo; po++) A[po] = order[A[po]];
  const DONE = NONE;
  for (let start = 0; start < count; start++) {
    let t = order[start];
    if (t === DONE) continue;
    let val = A[start];
    A[start] = NONE;
    order[start] = DONE;
    for (;;) {
      if (t < count && order[t] !== DONE) {
        const next = A[t];
        A[t] = val;
        val = next;
        const nt = order[t];
        order[t] = DONE;
        t = nt;
      } else {
        A[t] = val;
        break;
      }
    }
  }
}

/** Breadth-first search from the root over the edges that retain: `parent[node]` (NONE for the root and unreachable nodes). */
export function shortestParents(snap: HeapSnapshot, root: number, parent: Uint32Array, queue: Uint32Array): void {
  const { firstEdge, edgeTo } = snap;
  const weak = snap.E.weak;
  const shortcut = snap.E.shortcut;
  parent.fill(NONE, 0, snap.nodeCount);
  let head = 0;
  let tail = 0;
  queue[tail++] = root;
  parent[root] = root;
  while (head < tail) {
    const v = queue[head++];
    for (let e = firstEdge[v], end = firstEdge[v + 1]; e < end; e++) {
      const word = edgeTo[e];
      if (skip(word, v, root, weak, shortcut)) continue;
      const w = word & TO_MASK;
      if (parent[w] !== NONE) continue;
      parent[w] = v;
      queue[tail++] = w;
    }
  }
  parent[root] = NONE;
}

/** Words for the predecessor lists and, later, the retained sizes (Float64, two words per node). */
export function workWords(snap: HeapSnapshot): number {
  return Math.max(snap.edgeCount, 2 * snap.nodeCount, 1);
}

export function analyzeGraph(snap: HeapSnapshot, options: GraphOptions = {}): Graph {
  const root = options.root ?? 0;
  const N = snap.nodeCount;
  const A = new Uint32Array(N);
  const C = new Uint32Array(N + 1);
  const W = new Uint32Array(workWords(snap));
  const { count, passes } = dominatorsInPostorder(snap, root, A, C, W, options.onProgress);
  // the postorder again (cheaper in memory than keeping it through the dominators), into C
  postorder(snap, root, null, C);
  const retained = new Float64Array(W.buffer, 0, N);
  for (let v = 0; v < N; v++) retained[v] = snap.nodeSelf[v];
  retainedAndIdom(A, C, count, retained);
  options.onProgress?.('paths', 4, 5);
  const parent = new Uint32Array(N);
  shortestParents(snap, root, parent, C);
  options.onProgress?.('paths', 5, 5);
  const spare = new Uint32Array(W.buffer, N * 8, W.length - 2 * N);
  return { idom: A, retained, parent, reachable: count, passes, scratch: C.subarray(0, N), spare };
}

/** What the findings read of the graph, for a few nodes: from whole arrays (Graph) or kept for those nodes only (analyze.ts). */
export interface Tree {
  /** The node `node` was first reached from in the breadth-first search, NONE for the root and unreachable nodes. */
  parentOf(node: number): number;
  idomOf(node: number): number;
  retainedOf(node: number): number;
}

export function treeOf(g: Graph): Tree {
  return { parentOf: (n) => g.parent[n], idomOf: (n) => g.idom[n], retainedOf: (n) => g.retained[n] };
}

/** Whether a node is reachable from the root (through non-weak edges). */
export function isReachable(g: Graph, node: number, root = 0): boolean {
  return node === root || g.parent[node] !== NONE;
}
