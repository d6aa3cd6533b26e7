/**
 * What holds a retained object for the program: the place in the user's code that a fix changes. Findings are
 * grouped by it, not by the whole retainer path, so one leak reached two ways (five responses held by one
 * never-cleared interval's closure, whose Timeouts an array also keeps: four shortest paths through the timer
 * list, one through the array) is one finding, with its other paths as "also reachable through".
 *
 * Walking the readable path back from the object, the holder is the first of:
 * - a closure of the program's code (its script is not one of Node's own, `node:`): one function, whatever
 *   its instance (five intervals made by one line are one holder);
 * - a collection (`Array`, `Map`, `Set`, `WeakMap`, `WeakSet`, a plain `Object` used as a table): named by
 *   what holds it and by which edge (`module scope → cache → Map`, `Room → members → Array`), so that tables
 *   made by one line of code are one holder; one held by a scope's variable is that instance.
 * A path with neither keeps the earlier rule: its last hops.
 */
import { HeapSnapshot, NONE } from './snapshot.js';
import { scriptOf, type Step } from './paths.js';

const COLLECTIONS = ['Array', 'Map', 'Set', 'WeakMap', 'WeakSet', 'Object'];

export interface Holder {
  /** Groups objects held at one place. */
  key: string;
  /** Index in the readable path of the holder's step (its label is filled in later). */
  at: number;
  /** A closure (else a collection). */
  closure: boolean;
}

/** The holder of the object at the end of `steps` (objects and edges alternating), or null when there is none. */
export function holderOf(snap: HeapSnapshot, steps: Step[], names: (s: string) => number): Holder | null {
  const collections = new Set(COLLECTIONS.map(names).filter((s) => s !== NONE));
  // object steps sit at even distances from the object (the last step); a cut path ('…') ends the walk
  for (let i = steps.length - 3; i >= 0; i -= 2) {
    const st = steps[i];
    // the cut (readablePath keeps the head and the tail of a long path) sits between two object steps
    if (st.label === '…' || steps[i + 1]?.label === '…') return null;
    if (st.closure !== undefined) {
      if (isUserClosure(snap, st.closure, names)) return { key: `closure\u0000${st.key}`, at: i, closure: true };
      continue;
    }
    const v = st.node;
    if (v === undefined || snap.nodeType[v] !== snap.T.object || !collections.has(snap.nodeName[v])) continue;
    const owner = i >= 2 ? steps[i - 2] : undefined;
    const edge = i >= 1 ? steps[i - 1] : undefined;
    if (!owner || !edge || owner.key === '…' || owner.scope !== undefined) return { key: `collection\u0000@${v}`, at: i, closure: false };
    return { key: `collection\u0000${owner.key}\u0000${edge.key}\u0000${st.key}`, at: i, closure: false };
  }
  return null;
}

/** Whether a closure's function is the program's (a file, a URL), not Node's own (`node:…`). */
export function isUserClosure(snap: HeapSnapshot, closure: number, names: (s: string) => number): boolean {
  const file = scriptOf(snap, closure, names);
  return file !== '' && !file.startsWith('node:');
}
