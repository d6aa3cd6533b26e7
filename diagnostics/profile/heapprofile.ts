/**
 * Explains a sampled heap profile (`heap.heapprofile`, what `HeapProfiler.getSamplingProfile` answers and
 * DevTools loads): the allocation sites of the memory that is still live, by bytes, and, given the profile of
 * an earlier capture of the same process (`--base`), the sites that grew between the two.
 *
 * A site is a function's location, `file:line` (V8 records the line where the allocating function starts, not
 * the line of the allocation itself), taken at the innermost frame of the stack that is not Node's own code
 * (`node:*`), a dependency's (`node_modules/`) nor streamscope's own (where the agent says it lives, `streamscope.libraryPaths`
 * in the profile): `Buffer.allocUnsafe` inside `node:buffer`, called by `handler` in
 * `app.js:12`, is `app.js:12`.
 */
import { InputError } from '../heap/input-error.js';
import type { HeapProfile, HeapProfileNode } from './pprof.js';
import { objectCounts } from './pprof.js';

export interface HeapProfileSite {
  /** `functionName file:line`. */
  site: string;
  functionName: string;
  file: string;
  /** 1-based line of the function. */
  line: number;
  bytes: number;
  /** Share of the profile's live bytes, percent (one decimal). */
  percent: number;
  objects: number;
  /** The heaviest stack under this site, innermost first (`fn file:line`), up to 12 frames. */
  stack: string[];
}

export interface HeapProfileGrowth {
  site: string;
  file: string;
  line: number;
  bytes: number;
  baseBytes: number;
  growth: number;
}

export interface HeapProfileSummary {
  file: string;
  /** Live bytes the profile accounts for (V8's estimate from the samples). */
  totalBytes: number;
  samples: number;
  sites: HeapProfileSite[];
  /** With --base: the earlier profile and the sites that grew since, most first. */
  base?: { file: string; totalBytes: number };
  grown?: HeapProfileGrowth[];
}

export function isHeapProfile(data: unknown): data is HeapProfile {
  if (typeof data !== 'object' || data === null) return false;
  const head = (data as { head?: unknown }).head as HeapProfileNode | undefined;
  return typeof head === 'object' && head !== null && typeof head.selfSize === 'number' && typeof head.callFrame === 'object' && Array.isArray(head.children);
}

const isNodeOrDependency = (url: string): boolean => url === '' || url.startsWith('node:') || url.startsWith('internal/') || url.includes('/node_modules/');

function fileOf(url: string): string {
  return url.startsWith('file://') ? decodeURIComponent(url.slice(7)) : url;
}

function frameText(n: HeapProfileNode): string {
  const f = n.callFrame;
  const name = f.functionName || '(anonymous)';
  return f.url ? `${name} ${fileOf(f.url)}:${f.lineNumber + 1}` : name;
}

interface Acc {
  functionName: string;
  file: string;
  line: number;
  bytes: number;
  objects: number;
  heaviest: { bytes: number; stack: string[] };
}

/** Live bytes by site (see the module comment), keyed `file:line functionName`. */
function bySite(p: HeapProfile): { sites: Map<string, Acc>; total: number } {
  const counts = objectCounts(p);
  const lib = (p as { streamscope?: { libraryPaths?: unknown } }).streamscope?.libraryPaths;
  const libraryPaths = Array.isArray(lib) ? lib.filter((x): x is string => typeof x === 'string' && x.length > 1) : [];
  const isInternal = (url: string): boolean => isNodeOrDependency(url) || libraryPaths.some((x) => url.startsWith(x));
  const sites = new Map<string, Acc>();
  let total = 0;
  const stack: HeapProfileNode[] = [];
  const walk = (n: HeapProfileNode, depth: number): void => {
    if (depth > 10_000) throw new InputError('heap profile nests deeper than 10000 frames');
    stack.push(n);
    if (n.selfSize > 0) {
      total += n.selfSize;
      let at = stack.length - 1;
      while (at > 0 && isInternal((stack[at] as HeapProfileNode).callFrame.url)) at--;
      // every frame is Node's own (or the root): the innermost frame names the site
      if (at === 0) at = stack.length - 1;
      const s = stack[at] as HeapProfileNode;
      const f = s.callFrame;
      const functionName = f.functionName || '(anonymous)';
      const file = fileOf(f.url);
      const line = f.lineNumber + 1;
      const key = `${file}:${line} ${functionName}`;
      const a = sites.get(key) ?? { functionName, file, line, bytes: 0, objects: 0, heaviest: { bytes: -1, stack: [] } };
      a.bytes += n.selfSize;
      a.objects += counts.get(n.id) ?? 0;
      if (n.selfSize > a.heaviest.bytes) {
        const frames: string[] = [];
        for (let i = stack.length - 1; i > 0 && frames.length < 12; i--) frames.push(frameText(stack[i] as HeapProfileNode));
        a.heaviest = { bytes: n.selfSize, stack: frames };
      }
      sites.set(key, a);
    }
    for (const c of n.children) walk(c, depth + 1);
    stack.pop();
  };
  walk(p.head, 0);
  return { sites, total };
}

const siteName = (a: { functionName: string; file: string; line: number }): string => (a.file ? `${a.functionName} ${a.file}:${a.line}` : a.functionName);

export function analyzeHeapProfile(p: HeapProfile, file: string, base?: { profile: HeapProfile; file: string }): HeapProfileSummary {
  const { sites, total } = bySite(p);
  const list = [...sites.values()].sort((a, b) => b.bytes - a.bytes);
  const summary: HeapProfileSummary = {
    file,
    totalBytes: total,
    samples: p.samples?.length ?? 0,
    sites: list.slice(0, 30).map((a) => ({
      site: siteName(a),
      functionName: a.functionName,
      file: a.file,
      line: a.line,
      bytes: a.bytes,
      percent: total > 0 ? Math.round((a.bytes / total) * 1000) / 10 : 0,
      objects: a.objects,
      stack: a.heaviest.stack,
    })),
  };
  if (base) {
    const b = bySite(base.profile);
    summary.base = { file: base.file, totalBytes: b.total };
    const grown: HeapProfileGrowth[] = [];
    for (const [key, a] of sites) {
      const before = b.sites.get(key)?.bytes ?? 0;
      if (a.bytes > before) grown.push({ site: siteName(a), file: a.file, line: a.line, bytes: a.bytes, baseBytes: before, growth: a.bytes - before });
    }
    grown.sort((x, y) => y.growth - x.growth);
    summary.grown = grown.slice(0, 30);
  }
  return summary;
}
