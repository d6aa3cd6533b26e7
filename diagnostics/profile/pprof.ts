/**
 * V8 profiles in pprof's format (profile.proto, gzipped), encoded by `pprof-format` (Datadog's maintained
 * encoder), for `go tool pprof`, Grafana Pyroscope and speedscope.
 *
 * - CPU (`.cpuprofile` → `cpu.pb.gz`): sample types `samples/count` and `cpu/nanoseconds`; one pprof sample
 *   per V8 node with self samples, its value the node's sample count and the sum of their time deltas.
 * - Heap (`.heapprofile` → `heap.pb.gz`): sample types `inuse_objects/count` and `inuse_space/bytes`, as Go's
 *   heap profile; one pprof sample per node with a `selfSize`; objects are the node's samples (see objectCounts).
 * Locations are one per distinct (function, url, line); lines are 1-based, as pprof's.
 */
import zlib from 'node:zlib';
import { Function as PFunction, Label, Line, Location, Profile, Sample, StringTable, ValueType } from 'pprof-format';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber?: number;
}

export interface CpuProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}
export interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
  /** The agent's continuous profiler: the stream route each sample ran for (1 + index in routes; 0 none). */
  streamscope?: { routes?: string[]; sampleRoutes?: number[] };
}

/** The route of each sample of a CPU profile, when the agent labeled them; undefined otherwise. */
export function sampleRoutesOf(p: CpuProfile): { routes: string[]; sampleRoutes: number[] } | undefined {
  const x = p.streamscope;
  if (typeof x !== 'object' || x === null || !Array.isArray(x.routes) || !Array.isArray(x.sampleRoutes)) return undefined;
  if (x.sampleRoutes.length !== (p.samples ?? []).length) return undefined;
  return { routes: x.routes.map(String), sampleRoutes: x.sampleRoutes };
}

export interface HeapProfileNode {
  callFrame: CallFrame;
  selfSize: number;
  id: number;
  children: HeapProfileNode[];
}
export interface HeapProfile {
  head: HeapProfileNode;
  samples?: Array<{ size: number; nodeId: number; ordinal?: number }>;
}

class Builder {
  readonly strings = new StringTable();
  readonly functions: PFunction[] = [];
  readonly locations: Location[] = [];
  private readonly fnIds = new Map<string, number>();
  private readonly locIds = new Map<string, number>();

  location(f: CallFrame): number {
    const name = f.functionName || '(anonymous)';
    const line = f.lineNumber >= 0 ? f.lineNumber + 1 : 0;
    const fkey = `${name}\u0000${f.url}`;
    let fid = this.fnIds.get(fkey);
    if (fid === undefined) {
      fid = this.functions.length + 1;
      this.fnIds.set(fkey, fid);
      this.functions.push(new PFunction({ id: fid, name: this.strings.dedup(name), systemName: this.strings.dedup(name), filename: this.strings.dedup(f.url), startLine: line }));
    }
    const lkey = `${fid}\u0000${line}`;
    let lid = this.locIds.get(lkey);
    if (lid === undefined) {
      lid = this.locations.length + 1;
      this.locIds.set(lkey, lid);
      this.locations.push(new Location({ id: lid, line: [new Line({ functionId: fid, line })] }));
    }
    return lid;
  }

  type(type: string, unit: string): ValueType {
    return new ValueType({ type: this.strings.dedup(type), unit: this.strings.dedup(unit) });
  }
}

/** The V8 root frames that are not code: left out of pprof stacks, as pprof's own Node.js profilers do. */
const isRoot = (f: CallFrame): boolean => f.functionName === '(root)' && f.url === '';

export function cpuProfileToPprof(p: CpuProfile): Profile {
  const b = new Builder();
  const byId = new Map<number, CpuProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // one pprof sample per (node, route): the key is node id × (routes + 1) + route
  const labeled = sampleRoutesOf(p);
  const R = (labeled?.routes.length ?? 0) + 1;
  const count = new Map<number, number>();
  const time = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  // V8's delta i is the time before sample i; a sample stands for the time until the next one (the last: until
  // the profile's end), so the samples' times sum to the profile's duration less the time before the first
  let lastTs = p.startTime;
  for (const d of deltas) lastTs += d;
  for (let i = 0; i < samples.length; i++) {
    const r = labeled?.sampleRoutes[i];
    const id = (samples[i] as number) * R + (typeof r === 'number' && r > 0 && r < R ? r : 0);
    count.set(id, (count.get(id) ?? 0) + 1);
    const dt = i + 1 < samples.length ? (deltas[i + 1] ?? 0) : p.endTime - lastTs;
    time.set(id, (time.get(id) ?? 0) + Math.max(0, dt));
  }
  const routeKey = labeled ? b.strings.dedup('route') : 0;
  const stackOf = (id: number): number[] => {
    const out: number[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      if (n && !isRoot(n.callFrame)) out.push(b.location(n.callFrame));
    }
    return out; // leaf first, as pprof
  };
  const sample: Sample[] = [];
  for (const [key, c] of count) {
    const r = key % R;
    const label = r > 0 && labeled ? [new Label({ key: routeKey, str: b.strings.dedup(labeled.routes[r - 1] as string) })] : [];
    sample.push(new Sample({ locationId: stackOf(Math.floor(key / R)), value: [c, (time.get(key) ?? 0) * 1000], label }));
  }
  const sampleType = [b.type('samples', 'count'), b.type('cpu', 'nanoseconds')];
  const periodUs = samples.length > 0 ? Math.round((p.endTime - p.startTime) / samples.length) : 0;
  return new Profile({
    sampleType,
    sample,
    location: b.locations,
    function: b.functions,
    stringTable: b.strings,
    timeNanos: Date.now() * 1e6,
    durationNanos: Math.max(0, p.endTime - p.startTime) * 1000,
    periodType: { type: b.strings.dedup('cpu'), unit: b.strings.dedup('nanoseconds') },
    period: periodUs * 1000,
  });
}

/**
 * Objects at each node: the number of its samples. V8's profile carries, per sample, only its scaled bytes
 * (`size` × V8's count estimate), so the objects behind a sample cannot be recovered: `inuse_objects` counts
 * sampled objects (an undercount of all objects; `inuse_space`, the scaled bytes, is the estimate to read).
 */
export function objectCounts(p: HeapProfile): Map<number, number> {
  const n = new Map<number, number>();
  for (const s of p.samples ?? []) n.set(s.nodeId, (n.get(s.nodeId) ?? 0) + 1);
  const out = new Map<number, number>();
  const walk = (node: HeapProfileNode): void => {
    if (node.selfSize > 0) out.set(node.id, n.get(node.id) ?? 0);
    for (const c of node.children) walk(c);
  };
  walk(p.head);
  return out;
}

export function heapProfileToPprof(p: HeapProfile, intervalBytes: number): Profile {
  const b = new Builder();
  const counts = objectCounts(p);
  const sample: Sample[] = [];
  const walk = (node: HeapProfileNode, stack: number[]): void => {
    const here = isRoot(node.callFrame) ? stack : [b.location(node.callFrame), ...stack];
    if (node.selfSize > 0) sample.push(new Sample({ locationId: here, value: [counts.get(node.id) ?? 0, node.selfSize] }));
    for (const c of node.children) walk(c, here);
  };
  walk(p.head, []);
  return new Profile({
    sampleType: [b.type('inuse_objects', 'count'), b.type('inuse_space', 'bytes')],
    sample,
    location: b.locations,
    function: b.functions,
    stringTable: b.strings,
    timeNanos: Date.now() * 1e6,
    periodType: { type: b.strings.dedup('space'), unit: b.strings.dedup('bytes') },
    period: intervalBytes,
    defaultSampleType: b.strings.dedup('inuse_space'),
  });
}

export function gzipProfile(p: Profile): Buffer {
  return zlib.gzipSync(p.encode());
}

export function decodePprof(buf: Buffer): Profile {
  return Profile.decode(zlib.gunzipSync(buf));
}
