/**
 * Shortest retainer paths, from the breadth-first search parents computed in dominators.ts: walking them
 * back from an object gives a shortest path from a GC root to it.
 */
import { HeapSnapshot, NONE, TO_MASK } from './snapshot.js';
import type { Tree } from './dominators.js';

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
export function retainerPath(snap: HeapSnapshot, graph: Pick<Tree, 'parentOf'>, node: number, maxHops = 40): string[] {
  if (node !== 0 && graph.parentOf(node) === NONE) return [];
  const chain: number[] = [];
  for (let v = node; v !== NONE && chain.length <= maxHops * 4; v = graph.parentOf(v)) chain.push(v);
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

/** The nodes from a GC root to `node` (V8's synthetic root left out), or [] when unreachable. */
export function retainerChain(graph: Pick<Tree, 'parentOf'>, node: number): number[] {
  if (node !== 0 && graph.parentOf(node) === NONE) return [];
  const chain: number[] = [];
  for (let v = node; v !== NONE && chain.length < 100_000; v = graph.parentOf(v)) chain.push(v);
  chain.reverse();
  if (chain.length > 1 && chain[0] === 0) chain.shift();
  return chain;
}

/** One step of a readable path: an object or the edge to the next, with what groups it and what it shows. */
export interface Step {
  /** What groups findings (a closure by its function, not its instance). */
  key: string;
  label: string;
  /** A closure whose source location and variables are filled in later. */
  closure?: number;
  /** A scope (context) whose file is named after the closures that use it. */
  scope?: number;
  /** The object this step shows (object steps other than closures and anchors). */
  node?: number;
}

const KEEP_TAIL = 31;

/**
 * The retainer path as a reader thinks of it, objects and edges alternating:
 * - it starts at what holds the object for the program: an active timer (a `Timeout` reached through Node's
 *   timer lists), a module's (or function's) variable, else the GC root;
 * - a closure is one step, `name()` with its source location and the variables it holds, and the variable
 *   it holds the next object by is the edge (`context → system / Context → previous → …` collapsed);
 * - a `Map`/`Set` (and weak ones) is one step: its hash table's internal edges become `(entry)`.
 */
export function readablePath(snap: HeapSnapshot, chain: number[], names: (s: string) => number): Step[] {
  const n = chain.length;
  if (n === 0) return [];
  const nameOf = (v: number): number => snap.nodeName[v];
  const isObj = (v: number, s: string): boolean => snap.nodeType[v] === snap.T.object && names(s) !== NONE && nameOf(v) === names(s);
  const isContext = (v: number): boolean => snap.nodeType[v] === snap.T.object && nameOf(v) === names('system / Context') && names('system / Context') !== NONE;
  const edges: number[] = [NONE];
  for (let i = 1; i < n; i++) edges.push(edgeBetween(snap, chain[i - 1], chain[i]));
  const edgeName = (i: number): string => (edges[i] === NONE ? '?' : snap.edgeLabel(edges[i]));
  // where the program's holder starts
  let start = 0;
  let anchor: Step | null = null;
  let sawTimerList = false;
  for (let i = 0; i < n - 1; i++) {
    const v = chain[i];
    if (isObj(v, 'TimersList')) sawTimerList = true;
    if ((isObj(v, 'Timeout') || isObj(v, 'Immediate')) && (sawTimerList || isObj(v, 'Immediate'))) {
      start = i;
      anchor = isObj(v, 'Timeout') ? { key: 'active timer', label: 'active timer' } : { key: 'pending immediate', label: 'pending immediate' };
    } else if (isContext(v) && i > 0 && !(snap.nodeType[chain[i - 1]] === snap.T.closure) && !isContext(chain[i - 1])) {
      // a scope held by something other than a closure (the stack, a module record): its variables
      start = i;
      anchor = { key: 'scope', label: 'scope', scope: v };
    }
  }
  const out: Step[] = [];
  let i = start;
  if (anchor) {
    out.push(anchor);
    i = start;
    if (anchor.scope !== undefined) {
      // scope → variable → next
      i = start + 1;
      out.push(edgeStep(edgeName(i)));
      if (i >= n) return out;
    } else {
      i = start + 1;
      out.push(edgeStep(edgeName(i)));
    }
  } else {
    out.push(nodeStep(snap, chain[0]));
    i = 1;
    out.push(edgeStep(normalized(snap, edges[1])));
  }
  // i: index of the next node to emit (its edge is already out)
  for (; i < n; i++) {
    const v = chain[i];
    const t = snap.nodeType[v];
    if (t === snap.T.closure && i + 1 < n && isContext(chain[i + 1])) {
      // closure → context → Context (→ previous → Context)* → variable → next
      let j = i + 1;
      while (j + 1 < n && isContext(chain[j + 1])) j++;
      const name = snap.name(v);
      const shared = snap.findEdge(v, names('shared'));
      out.push({ key: `${name}()@${shared === NONE ? v : snap.edgeTarget(shared)}`, label: `${name || '(anonymous)'}()`, closure: v });
      if (j + 1 < n) out.push(edgeStep(edgeName(j + 1)));
      i = j;
      continue;
    }
    if ((isObj(v, 'Map') || isObj(v, 'Set') || isObj(v, 'WeakMap') || isObj(v, 'WeakSet')) && i + 2 < n && edgeName(i + 1) === 'table') {
      out.push(nodeStep(snap, v));
      out.push(edgeStep('(entry)'));
      i += 1; // skip the table; the next node is the entry's value
      continue;
    }
    if (isContext(v) && i + 1 < n) {
      // a scope reached through a property (rare): show the variable
      out.push(nodeStep(snap, v));
      out.push(edgeStep(edgeName(i + 1)));
      continue;
    }
    out.push(nodeStep(snap, v));
    if (i + 1 < n) out.push(edgeStep(normalized(snap, edges[i + 1])));
  }
  if (out.length > 2 * KEEP_TAIL + 8) {
    const head = out.slice(0, 7);
    return [...head, { key: '…', label: '…' }, ...out.slice(out.length - KEEP_TAIL)];
  }
  return out;
}

function edgeStep(label: string): Step {
  return { key: label, label };
}

function nodeStep(snap: HeapSnapshot, v: number): Step {
  const l = nodeLabel(snap, v);
  return { key: l, label: l, node: v };
}

function normalized(snap: HeapSnapshot, e: number): string {
  return e === NONE ? '?' : normalizeEdge(snap, e);
}

/** Where a closure's function is: `file:line:column` (1-based), from the snapshot's locations and the function's script. */
export function closureLabel(
  snap: HeapSnapshot,
  closure: number,
  loc: { line: number; column: number } | undefined,
  names: (s: string) => number,
): string {
  const name = snap.name(closure) || '(anonymous)';
  const file = scriptOf(snap, closure, names);
  const where = loc ? `${file || '?'}:${loc.line}:${loc.column}` : file;
  const vars = closureVariables(snap, closure, names);
  return `${name}()${where ? ` ${where}` : ''}${vars.length ? ` {${vars.join(', ')}}` : ''}`;
}

/** The script (URL or path) of a closure's function: closure → shared → script_or_debug_info (→ script). */
export function scriptOf(snap: HeapSnapshot, closure: number, names: (s: string) => number): string {
  const sh = snap.findEdge(closure, names('shared'));
  if (sh === NONE) return '';
  const sfi = snap.edgeTarget(sh);
  for (const p of ['script_or_debug_info', 'script']) {
    const e = snap.findEdge(sfi, names(p));
    if (e === NONE) continue;
    let s = snap.edgeTarget(e);
    const inner = snap.findEdge(s, names('script'));
    if (inner !== NONE) s = snap.edgeTarget(inner);
    const name = snap.name(s);
    if (name && !name.startsWith('system /')) return name;
  }
  return '';
}

/** Names of the variables a closure's scope (and the scopes around it, up to the module) hold. */
export function closureVariables(snap: HeapSnapshot, closure: number, names: (s: string) => number, max = 8): string[] {
  const out: string[] = [];
  const c = snap.findEdge(closure, names('context'));
  let ctx = c === NONE ? NONE : snap.edgeTarget(c);
  for (let depth = 0; ctx !== NONE && depth < 1; depth++) {
    for (let e = snap.firstEdge[ctx], end = snap.firstEdge[ctx + 1]; e < end; e++) {
      if (snap.edgeType(e) === snap.E.context) out.push(snap.edgeLabel(e));
    }
    const p = snap.findEdge(ctx, names('previous'));
    ctx = p === NONE ? NONE : snap.edgeTarget(p);
  }
  return out.length > max ? [...out.slice(0, max), '…'] : out;
}
