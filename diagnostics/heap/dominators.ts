/**
 * Dominator tree and retained sizes, on typed arrays (Cooper, Harvey & Kennedy, "A Simple, Fast Dominance
 * Algorithm", 2001 — the iterative algorithm on reverse postorder, with a worklist of affected nodes as in
 * Chrome DevTools). Weak edges retain nothing and are ignored. Nodes that only weak edges reach are
 * unreachable: they have no dominator (NONE) and their retained size is their self size.
 */
import { HeapSnapshot, NONE, TO_MASK } from './snapshot.js';

export interface Dominators {
  /** Immediate dominator of each node (node index), NONE for the root and for unreachable nodes. */
  idom: Uint32Array;
  /** Retained size of each node in bytes. */
  retained: Float64Array;
  /** Number of nodes reachable from the root (the root included). */
  reachable: number;
}

export function computeDominators(snap: HeapSnapshot, root = 0): Dominators {
  const N = snap.nodeCount;
  const { firstEdge, edgeTo, nodeSelf } = snap;
  const weak = snap.E.weak;

  // 1. iterative DFS from the root: postorder numbering
  const po2node = new Uint32Array(N);
  const node2po = new Uint32Array(N).fill(NONE);
  let count = 0;
  {
    const stackNode = new Uint32Array(N);
    const stackEdge = new Uint32Array(N);
    const visited = new Uint8Array(N);
    let sp = 0;
    stackNode[0] = root;
    stackEdge[0] = firstEdge[root];
    visited[root] = 1;
    sp = 1;
    while (sp > 0) {
      const v = stackNode[sp - 1];
      let e = stackEdge[sp - 1];
      const end = firstEdge[v + 1];
      let pushed = false;
      for (; e < end; e++) {
        const word = edgeTo[e];
        if (word >>> 29 === weak) continue;
        const w = word & TO_MASK;
        if (visited[w]) continue;
        visited[w] = 1;
        stackEdge[sp - 1] = e + 1;
        stackNode[sp] = w;
        stackEdge[sp] = firstEdge[w];
        sp++;
        pushed = true;
        break;
      }
      if (!pushed) {
        sp--;
        node2po[v] = count;
        po2node[count++] = v;
      }
    }
  }
  const rootPo = count - 1;

  // 2. predecessors in postorder space (reachable nodes, non-weak edges)
  const predFirst = new Uint32Array(count + 1);
  for (let po = 0; po < count; po++) {
    const v = po2node[po];
    for (let e = firstEdge[v], end = firstEdge[v + 1]; e < end; e++) {
      const word = edgeTo[e];
      if (word >>> 29 === weak) continue;
      predFirst[node2po[word & TO_MASK] + 1]++;
    }
  }
  for (let i = 0; i < count; i++) predFirst[i + 1] += predFirst[i];
  const predList = new Uint32Array(predFirst[count]);
  {
    const fill = predFirst.slice(0, count);
    for (let po = 0; po < count; po++) {
      const v = po2node[po];
      for (let e = firstEdge[v], end = firstEdge[v + 1]; e < end; e++) {
        const word = edgeTo[e];
        if (word >>> 29 === weak) continue;
        const t = node2po[word & TO_MASK];
        predList[fill[t]++] = po;
      }
    }
  }

  // 3. iterate to a fixed point, in reverse postorder, over affected nodes only
  const doms = new Uint32Array(count).fill(NONE);
  doms[rootPo] = rootPo;
  const affected = new Uint8Array(count);
  // successors of the root are affected first
  for (let e = firstEdge[root], end = firstEdge[root + 1]; e < end; e++) {
    const word = edgeTo[e];
    if (word >>> 29 === weak) continue;
    affected[node2po[word & TO_MASK]] = 1;
  }
  let changed = true;
  while (changed) {
    changed = false;
    for (let po = rootPo - 1; po >= 0; po--) {
      if (!affected[po]) continue;
      affected[po] = 0;
      let newIdom = NONE;
      for (let p = predFirst[po], end = predFirst[po + 1]; p < end; p++) {
        let a = predList[p];
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
        const v = po2node[po];
        for (let e = firstEdge[v], end = firstEdge[v + 1]; e < end; e++) {
          const word = edgeTo[e];
          if (word >>> 29 === weak) continue;
          affected[node2po[word & TO_MASK]] = 1;
        }
      }
    }
  }

  // 4. retained sizes: a dominator always has a higher postorder number than the nodes it dominates
  const retained = new Float64Array(N);
  for (let v = 0; v < N; v++) retained[v] = nodeSelf[v];
  const idom = new Uint32Array(N).fill(NONE);
  for (let po = 0; po < rootPo; po++) {
    const d = doms[po];
    const v = po2node[po];
    const dv = po2node[d];
    idom[v] = dv;
    retained[dv] += retained[v];
  }
  return { idom, retained, reachable: count };
}
