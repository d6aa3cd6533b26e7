// The heap analyzer on a real snapshot of a leaky node:http server (a child process that never loads
// streamscope): parsing matches a plain JSON.parse of the same file, the dominator tree satisfies its
// invariants, and the leaks are found with the right counts and retainer paths.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readHeapSnapshot } from '../diagnostics/heap/parse.js';
import { analyzeGraph, type Graph } from '../diagnostics/heap/dominators.js';
import { analyzeHeap, analyzeHeapFile, QUEUED_BYTES_THRESHOLD, type HeapAnalysis } from '../diagnostics/heap/analyze.js';
import { WANTED_STRINGS } from '../diagnostics/heap/connections.js';
import { canRelease, HeapSnapshot, NONE } from '../diagnostics/heap/snapshot.js';

const fixture = path.join(import.meta.dirname, 'fixtures/heap/leaky-server.mjs');
let dir: string;
let file: string;
let snap: HeapSnapshot;
let dom: Graph;
let result: HeapAnalysis;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heap-analyze-'));
  file = path.join(dir, 'leaky.heapsnapshot');
  execFileSync(process.execPath, [fixture, file], { cwd: dir, timeout: 30_000 });
  snap = readHeapSnapshot(file, { wanted: WANTED_STRINGS });
  dom = analyzeGraph(snap);
  result = analyzeHeap(snap);
});

afterAll(() => {
  snap?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('streaming snapshot reader', () => {
  it('reads every node and edge field exactly as JSON.parse of the whole file does', () => {
    const ref = JSON.parse(fs.readFileSync(file, 'utf8'));
    const meta = ref.snapshot.meta;
    const F = meta.node_fields.length;
    const EF = meta.edge_fields.length;
    expect(snap.nodeCount).toBe(ref.nodes.length / F);
    expect(snap.edgeCount).toBe(ref.edges.length / EF);
    expect(snap.stringCount).toBe(ref.strings.length);
    const [fType, fName, fId, fSelf, fEdges] = ['type', 'name', 'id', 'self_size', 'edge_count'].map((f) => meta.node_fields.indexOf(f));
    let e = 0;
    for (let n = 0; n < snap.nodeCount; n++) {
      expect(snap.nodeType[n]).toBe(ref.nodes[n * F + fType]);
      expect(snap.nodeName[n]).toBe(ref.nodes[n * F + fName]);
      expect(snap.nodeSelf[n]).toBe(ref.nodes[n * F + fSelf]);
      expect(snap.firstEdge[n]).toBe(e);
      e += ref.nodes[n * F + fEdges];
    }
    for (let i = 0; i < snap.edgeCount; i++) {
      if (snap.edgeType(i) !== ref.edges[i * EF] || snap.edgeName[i] !== ref.edges[i * EF + 1] || snap.edgeTarget(i) * F !== ref.edges[i * EF + 2]) {
        throw new Error(`edge ${i} differs`);
      }
    }
    // ids are read back from the file on demand
    const sample = [0, 1, 2, snap.nodeCount >> 1, snap.nodeCount - 1];
    const ids = snap.nodeIds(sample);
    expect(sample.map((n) => ids.get(n))).toEqual(sample.map((n) => ref.nodes[n * F + fId]));
    // strings are read back from the file, escapes decoded
    for (let i = 0; i < ref.strings.length; i += 97) {
      const want: string = ref.strings[i];
      if (want.length < 4096) expect(snap.string(i)).toBe(want);
    }
  });

  it('reads a self size back from the file per node (a mark every 64 nodes) as the whole parse has it', () => {
    const lean = readHeapSnapshot(file, { wanted: WANTED_STRINGS, lean: true });
    try {
      expect(lean.nodeSelf.length).toBe(0);
      lean.loadColumns({ selfMarks: true });
      const sample = [0, 1, 63, 64, 65, 127, 128, snap.nodeCount - 65, snap.nodeCount - 64, snap.nodeCount - 1];
      for (let n = 2; n < snap.nodeCount; n += 101) sample.push(n);
      expect(sample.map((n) => lean.selfSize(n))).toEqual(sample.map((n) => snap.nodeSelf[n]));
      expect(sample.filter((n) => snap.nodeSelf[n] > 0).length).toBeGreaterThan(sample.length / 2);
    } finally {
      lean.close();
    }
  });

  it('gives the same result whatever the read size (tokens split across chunks)', () => {
    const small = readHeapSnapshot(file, { wanted: WANTED_STRINGS, chunkSize: 4093 });
    try {
      expect(Buffer.from(small.edgeTo.buffer).equals(Buffer.from(snap.edgeTo.buffer))).toBe(true);
      expect(Buffer.from(small.nodeName.buffer).equals(Buffer.from(snap.nodeName.buffer))).toBe(true);
      expect(Buffer.from(small.firstEdge.buffer).equals(Buffer.from(snap.firstEdge.buffer))).toBe(true);
      for (const w of ['ServerResponse', 'destroyed', '_closed', 'socket']) expect(small.stringIndex(w)).toBe(snap.stringIndex(w));
      expect(small.stringIndex('ServerResponse')).not.toBe(NONE);
    } finally {
      small.close();
    }
  });
});

describe('dominator tree and retained sizes', () => {
  it("every node's retained size is at least its self size, and the root's is the sum of reachable self sizes", () => {
    let reachableSelf = 0;
    for (let n = 0; n < snap.nodeCount; n++) {
      expect(dom.retained[n] >= snap.nodeSelf[n]).toBe(true);
      if (n === 0 || dom.idom[n] !== NONE) reachableSelf += snap.nodeSelf[n];
    }
    expect(dom.retained[0]).toBe(reachableSelf);
    expect(dom.reachable).toBeGreaterThan(snap.nodeCount * 0.9);
  });

  it('the retained size of a node is the sum of the self sizes of the objects that become unreachable without it', () => {
    // independent check of the dominator tree: remove v, search from the root, and add up what is lost
    const weak = snap.E.weak;
    const shortcut = snap.E.shortcut;
    const reach = (without: number): Uint8Array => {
      const seen = new Uint8Array(snap.nodeCount);
      const stack = [0];
      seen[0] = 1;
      while (stack.length) {
        const v = stack.pop()!;
        for (let e = snap.firstEdge[v]; e < snap.firstEdge[v + 1]; e++) {
          if (snap.edgeType(e) === weak || (snap.edgeType(e) === shortcut && v !== 0)) continue;
          const w = snap.edgeTarget(e);
          if (w === without || seen[w]) continue;
          seen[w] = 1;
          stack.push(w);
        }
      }
      return seen;
    };
    const all = reach(NONE);
    const sRes = snap.stringIndex('ServerResponse');
    const candidates: number[] = [];
    for (let n = 0; n < snap.nodeCount; n++) if (snap.nodeName[n] === sRes && all[n]) candidates.push(n);
    // and a spread of other reachable nodes, big dominators included
    const byRetained = [...Array(snap.nodeCount).keys()].filter((n) => all[n] && n !== 0).sort((a, b) => dom.retained[b] - dom.retained[a]);
    candidates.push(...byRetained.slice(0, 5), ...byRetained.filter((_, i) => i % Math.floor(byRetained.length / 15) === 0).slice(0, 15));
    expect(candidates.length).toBeGreaterThan(20);
    for (const v of candidates) {
      const without = reach(v);
      let lost = snap.nodeSelf[v];
      for (let n = 0; n < snap.nodeCount; n++) if (all[n] && !without[n] && n !== v) lost += snap.nodeSelf[n];
      expect({ node: v, retained: dom.retained[v] }).toEqual({ node: v, retained: lost });
    }
  });

  it('every immediate dominator lies on every path to the node (the shortest one included)', () => {
    const paths = dom;
    for (let n = 1; n < snap.nodeCount; n += 101) {
      const d = dom.idom[n];
      if (d === NONE) continue;
      let onPath = false;
      for (let v = paths.parent[n]; v !== NONE; v = paths.parent[v]) if (v === d) onPath = true;
      expect(onPath).toBe(true);
    }
  });
});

describe('findings on a leaky server that never loaded streamscope', () => {
  const total = (kind: string): number => result.findings.filter((f) => f.kind === kind).reduce((s, f) => s + f.count, 0);

  it('finds the 5 responses of closed connections, grouped by how they are held', () => {
    expect(total('retained_response')).toBe(5);
    const groups = result.findings.filter((f) => f.kind === 'retained_response');
    expect(groups.every((g) => g.severity === 'error' && g.path.at(-1) === 'ServerResponse')).toBe(true);
    const byArray = groups.find((g) => g.path.includes('leaked'));
    expect(byArray?.count).toBe(3);
    expect(byArray?.path.slice(-3)).toEqual(['Array', '[]', 'ServerResponse']);
    const byTimer = groups.find((g) => g.path.includes('_onTimeout'));
    expect(byTimer?.count).toBe(2);
    // readable: the timer, the closure with its source position and variables, the variable
    const p = byTimer!.path;
    expect(p[0]).toBe('active timer');
    expect(p[1]).toBe('_onTimeout');
    expect(p[2]).toMatch(/^produce\(\) file:\/\/.*leaky-server\.mjs:\d+:\d+ \{res\}$/);
    expect(p.slice(3)).toEqual(['res', 'ServerResponse']);
    // raw: as V8 records it
    const r = byTimer!.rawPath;
    expect(r.slice(r.indexOf('Timeout'))).toEqual(['Timeout', '_onTimeout', 'produce()', 'context', 'system / Context', 'res', 'ServerResponse']);
  });

  it('alternates objects and edges, in the readable and the raw path', () => {
    for (const f of result.findings) {
      expect(f.path.length % 2).toBe(1);
      expect(f.rawPath.length % 2).toBe(1);
      expect(f.path[0]).not.toBe('');
      expect(f.retainedSize).toBeGreaterThan(0);
      expect(f.ids.length).toBeGreaterThan(0);
    }
  });

  it("finds the closed connections' requests and sockets", () => {
    expect(total('retained_request')).toBe(5);
    expect(total('retained_socket')).toBe(5);
    expect(result.summary.responses.closed).toBe(5);
  });

  it('attributes the queued writes to the response of the client that never reads, and flags nothing healthy', () => {
    const q = result.findings.filter((f) => f.kind === 'queued_write_buffer');
    expect(q).toHaveLength(1);
    expect(q[0].count).toBe(1);
    expect(q[0].queuedBytes!).toBeGreaterThanOrEqual(QUEUED_BYTES_THRESHOLD);
    // 256 distinct 64 KiB chunks were written; what the kernel did not take is still queued
    expect(q[0].queuedBytes!).toBeLessThanOrEqual(256 * (64 * 1024 + 8)); // each chunk once, plus chunk headers
    expect(q[0].path.at(-1)).toBe('ServerResponse');
    // the open healthy stream and the slow one are responses, but not of closed connections
    expect(result.summary.responses.total - result.summary.responses.closed).toBeGreaterThanOrEqual(2);
  });

  it('summarizes retained memory by constructor, largest first', () => {
    const c = result.summary.byConstructor;
    expect(c.length).toBeGreaterThan(5);
    for (let i = 1; i < c.length; i++) expect(c[i - 1].retainedSize).toBeGreaterThanOrEqual(c[i].retainedSize);
    expect(c[0].retainedSize).toBeLessThanOrEqual(result.summary.totalSize);
  });
});

/**
 * Immediate dominators by Lengauer & Tarjan (1979, the simple version: path compression, no balancing) over
 * DFS preorder numbers: an algorithm independent of the analyzer's (Cooper–Harvey–Kennedy over postorder).
 * Same graph rule: weak edges and shortcut edges other than the root's retain nothing. -1: no dominator.
 */
function referenceIdom(s: HeapSnapshot): Int32Array {
  const n = s.nodeCount;
  const weak = s.E.weak;
  const shortcut = s.E.shortcut;
  const succ = (v: number): number[] => {
    const out: number[] = [];
    for (let e = s.firstEdge[v]; e < s.firstEdge[v + 1]; e++) {
      const t = s.edgeType(e);
      if (t === weak || (t === shortcut && v !== 0)) continue;
      out.push(s.edgeTarget(e));
    }
    return out;
  };
  const dfnum = new Int32Array(n).fill(-1);
  const vertex: number[] = [];
  const parent = new Int32Array(n).fill(-1);
  const preds: number[][] = Array.from({ length: n }, () => []);
  const stack: Array<[number, number[], number]> = [[0, succ(0), 0]];
  dfnum[0] = 0;
  vertex.push(0);
  while (stack.length) {
    const top = stack[stack.length - 1];
    if (top[2] === top[1].length) {
      stack.pop();
      continue;
    }
    const w = top[1][top[2]++];
    preds[w].push(top[0]);
    if (dfnum[w] >= 0) continue;
    dfnum[w] = vertex.length;
    vertex.push(w);
    parent[w] = top[0];
    stack.push([w, succ(w), 0]);
  }
  const semi = Int32Array.from(dfnum);
  const idom = new Int32Array(n).fill(-1);
  const ancestor = new Int32Array(n).fill(-1);
  const label = Int32Array.from({ length: n }, (_, i) => i);
  const bucket: number[][] = Array.from({ length: n }, () => []);
  const evaluate = (v: number): number => {
    if (ancestor[v] === -1) return v;
    const path: number[] = [];
    for (let x = v; ancestor[ancestor[x]] !== -1; x = ancestor[x]) path.push(x);
    for (let i = path.length - 1; i >= 0; i--) {
      const y = path[i];
      const a = ancestor[y];
      if (semi[label[a]] < semi[label[y]]) label[y] = label[a];
      ancestor[y] = ancestor[a];
    }
    return label[v];
  };
  for (let i = vertex.length - 1; i >= 1; i--) {
    const w = vertex[i];
    for (const v of preds[w]) {
      const u = evaluate(v);
      if (semi[u] < semi[w]) semi[w] = semi[u];
    }
    bucket[vertex[semi[w]]].push(w);
    const p = parent[w];
    ancestor[w] = p;
    for (const v of bucket[p]) {
      const u = evaluate(v);
      idom[v] = semi[u] < semi[v] ? u : p;
    }
    bucket[p] = [];
  }
  for (let i = 1; i < vertex.length; i++) {
    const w = vertex[i];
    if (idom[w] !== vertex[semi[w]]) idom[w] = idom[idom[w]];
  }
  return idom;
}

describe('the results against an independent computation (what a memory optimization must not change)', () => {
  it('every node has the immediate dominator and the retained size of an independent Lengauer–Tarjan', () => {
    const ref = referenceIdom(snap);
    // retained sizes over the reference tree: descendants come later in DFS preorder, so add from the end
    const order = [...Array(snap.nodeCount).keys()].filter((v) => v === 0 || ref[v] >= 0);
    const pre = new Int32Array(snap.nodeCount).fill(-1);
    // a dominator is a DFS ancestor: sorting by depth in the reference tree puts it first
    const depth = (v: number): number => {
      let d = 0;
      for (let x = v; x !== 0; x = ref[x]) d++;
      return d;
    };
    order.forEach((v) => (pre[v] = depth(v)));
    order.sort((a, b) => pre[b] - pre[a]);
    const retained = Float64Array.from(snap.nodeSelf);
    for (const v of order) if (v !== 0) retained[ref[v]] += retained[v];
    let mismatches = 0;
    const first: unknown[] = [];
    for (let v = 0; v < snap.nodeCount; v++) {
      const want = { idom: ref[v] < 0 ? NONE : ref[v], retained: retained[v] };
      const got = { idom: dom.idom[v], retained: dom.retained[v] };
      if (want.idom !== got.idom || want.retained !== got.retained) {
        mismatches++;
        if (first.length < 3) first.push({ node: v, want, got });
      }
    }
    expect({ mismatches, first }).toEqual({ mismatches: 0, first: [] });
    expect(order.length).toBe(dom.reachable);
  });

  it("the CLI's lean analysis (graph only in memory, columns read back from the file) gives exactly the whole-snapshot analysis", () => {
    const lean = analyzeHeapFile(file);
    expect(lean.findings.length).toBeGreaterThan(2);
    expect(lean).toEqual(result);
  });

  it('the lean analysis gives the same with the columns kept (Node 20) and released between phases (Node >= 21)', () => {
    expect(analyzeHeapFile(file, { release: false })).toEqual(result);
    if (canRelease) expect(analyzeHeapFile(file, { release: true })).toEqual(result);
  });
});

describe('what the lean analysis holds in memory (the floor of its peak RSS)', () => {
  const N = () => snap.nodeCount;
  const E = () => snap.edgeCount;
  /** Bytes of the graph (node types, first edges, edge targets) and of the three work arrays (A, C: a word per node; W: a word per edge or two per node). */
  const graphAndWork = () => N() + 4 * (N() + 1) + 4 * E() + 4 * N() + 4 * (N() + 1) + 4 * Math.max(E(), 2 * N(), 1);
  const run = (release: boolean): Map<string, number> => {
    const held = new Map<string, number>();
    analyzeHeapFile(file, { release, onHeld: (phase, bytes) => held.set(phase, Math.max(bytes, held.get(phase) ?? 0)) });
    return held;
  };

  it('keeps one word per 64 strings to find them in the file, not their offsets and lengths', () => {
    const held = run(false);
    const strings = snap.stringCount;
    expect(strings).toBeGreaterThan(10 * 64);
    // after the shortest paths: the graph, the work arrays and the string index, nothing else
    expect(held.get('paths')! - graphAndWork()).toBe(4 * Math.ceil(strings / 64));
  });

  it.skipIf(!canRelease)('never holds the whole graph and all three work arrays at once where memory can be released (Node >= 21)', () => {
    const held = run(true);
    const floor = graphAndWork();
    // no phase holds all of it; the two where the work is (the dominators' predecessor lists, and the findings
    // with every column but the self sizes read back) at least 3 bytes a node less (first edges as one byte
    // a node while the lists are built; self sizes left in the file)
    // (the shortest paths come before W is first written: its pages are not in memory yet)
    for (const [phase, bytes] of held) if (phase !== 'paths') expect({ phase, under: floor - bytes > 0 }).toEqual({ phase, under: true });
    for (const phase of ['predecessors', 'dominators', 'findings']) expect({ phase, saved: floor - held.get(phase)! >= 3 * N() }).toEqual({ phase, saved: true });
    expect([...held.keys()]).toEqual(['paths', 'predecessors', 'dominators', 'retained', 'constructors', 'findings']);
  });
});
