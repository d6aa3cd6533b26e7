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
 * Memory: four arrays of one word per node and one of one word per edge, reused from phase to phase
 * (postorder → predecessors → dominators → retained sizes → search queue), so that a 1 GB snapshot is
 * analyzed in less memory than its size.
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

export function analyzeGraph(snap: HeapSnapshot, options: GraphOptions = {}): Graph {
  const root = options.root ?? 0;
  const N = snap.nodeCount;
  const { firstEdge, edgeTo, nodeSelf } = snap;
  const weak = snap.E.weak;
  // DevTools' rule (HeapSnapshot.isEssentialEdge): shortcut edges (a bound function's `bound_argument_N`, which
  // repeats what its `bindings` array holds) retain nothing, except the root's (they mark the global objects)
  const shortcut = snap.E.shortcut;
  const progress = options.onProgress;

  // A: node → postorder (later: dominators in postorder space, then BFS parents)
  // B: postorder → node (later: BFS queue)
  const A = new Uint32Array(N).fill(NONE);
  const B = new Uint32Array(N);
  const ON_STACK = NONE - 1;

  // 1. iterative depth-first search from the root: postorder numbering
  let count = 0;
  {
    const nodes = new Stack();
    const edges = new Stack();
    nodes.push(root);
    edges.push(firstEdge[root]);
    A[root] = ON_STACK;
    while (nodes.size > 0) {
      const top = nodes.size - 1;
      const v = nodes.data[top];
      let e = edges.data[top];
      const end = firstEdge[v + 1];
      let pushed = false;
      for (; e < end; e++) {
        const word = edgeTo[e];
        if (word >>> 29 === weak || (word >>> 29 === shortcut && v !== root)) continue;
        const w = word & TO_MASK;
        if (A[w] !== NONE) continue;
        A[w] = ON_STACK;
        edges.data[top] = e + 1;
        nodes.push(w);
        edges.push(firstEdge[w]);
        pushed = true;
        break;
      }
      if (!pushed) {
        nodes.size--;
        edges.size--;
        A[v] = count;
        B[count++] = v;
      }
    }
  }
  const rootPo = count - 1;
  progress?.('dominators', 1, 5);

  // 2. predecessors in postorder space. C: first predecessor of each postorder index (later: idom by node)
  const C = new Uint32Array(N + 1);
  for (let po = 0; po < count; po++) {
    const v = B[po];
    for (let e = firstEdge[v], end = firstEdge[v + 1]; e < end; e++) {
      const word = edgeTo[e];
      if (word >>> 29 === weak || (word >>> 29 === shortcut && v !== root)) continue;
      C[A[word & TO_MASK] + 1]++;
    }
  }
  for (let i = 0; i < count; i++) C[i + 1] += C[i];
  const predCount = C[count];
  // D: predecessor lists (later: retained sizes, when big enough). C[t + 1] is the end of t's list; filling
  // backwards from it leaves C[t + 1] at the start of t's list, and one shift puts the lists in place
  // (no second cursor array at the moment memory peaks).
  const D = new Uint32Array(Math.max(predCount, 1));
  for (let po = 0; po < count; po++) {
    const v = B[po];
    for (let e = firstEdge[v], end = firstEdge[v + 1]; e < end; e++) {
      const word = edgeTo[e];
      if (word >>> 29 === weak || (word >>> 29 === shortcut && v !== root)) continue;
      D[--C[A[word & TO_MASK] + 1]] = po;
    }
  }
  for (let i = 0; i < count; i++) C[i] = C[i + 1];
  C[count] = predCount;
  progress?.('dominators', 2, 5);

  // 3. Cooper–Harvey–Kennedy, in postorder space; A is free again and holds the dominators
  const doms = A;
  doms.fill(NONE);
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
        let a = D[p];
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
  progress?.('dominators', 3, 5);

  // 4. retained sizes (a dominator has a higher postorder number than what it dominates) and idom by node
  const retained = D.byteLength >= N * 8 ? new Float64Array(D.buffer, 0, N) : new Float64Array(N);
  for (let v = 0; v < N; v++) retained[v] = nodeSelf[v];
  const idom = new Uint32Array(C.buffer, 0, N);
  idom.fill(NONE);
  for (let po = 0; po < rootPo; po++) {
    const v = B[po];
    const dv = B[doms[po]];
    idom[v] = dv;
    retained[dv] += retained[v];
  }
  progress?.('paths', 4, 5);

  // 5. breadth-first search from the root: A holds the parents, B the queue
  const parent = A;
  parent.fill(NONE);
  const queue = B;
  let head = 0;
  let tail = 0;
  queue[tail++] = root;
  parent[root] = root;
  while (head < tail) {
    const v = queue[head++];
    for (let e = firstEdge[v], end = firstEdge[v + 1]; e < end; e++) {
      const word = edgeTo[e];
      if (word >>> 29 === weak || (word >>> 29 === shortcut && v !== root)) continue;
      const w = word & TO_MASK;
      if (parent[w] !== NONE) continue;
      parent[w] = v;
      queue[tail++] = w;
    }
  }
  parent[root] = NONE;
  progress?.('paths', 5, 5);
  const spare = retained.buffer === D.buffer ? new Uint32Array(D.buffer, N * 8, (D.byteLength - N * 8) >>> 2) : new Uint32Array(D.buffer);
  return { idom, retained, parent, reachable: count, passes, scratch: queue, spare };
}

/** Whether a node is reachable from the root (through non-weak edges). */
export function isReachable(g: Graph, node: number, root = 0): boolean {
  return node === root || g.parent[node] !== NONE;
}
