/**
 * Trace analysis (Chrome trace-event format, as `NodeTracing` / `trace_events` write it:
 * `{ traceEvents: [...] }` or a bare array). Reports:
 * - long tasks: event-loop turns that blocked for at least `longTaskMs` — complete (`X`) events of Node's
 *   environment (`RunTimers`, `CheckImmediate`, …) and async-hook callback spans (`<TYPE>_CALLBACK` b/e pairs);
 *   nested spans count once, under the outermost;
 * - GC pauses: V8's `MinorGC`/`MajorGC` begin/end pairs, else its `V8.GC*` complete events;
 * - async resources created during the trace and not destroyed by its end (`node.async_hooks` b/e pairs).
 */
import { InputError } from '../heap/input-error.js';
import { parseJsonInput, readInput } from '../transport/safe-fs.js';
import type { TraceFinding, TraceSummary } from '../report/types.js';

export const LONG_TASK_MS = 50;
/** A type with at least this many resources alive at the end of the trace is reported. */
export const ASYNC_ALIVE_THRESHOLD = 10;
const MAX_TRACE_BYTES = 400 * 1024 * 1024;

interface TraceEvent {
  name?: unknown;
  cat?: unknown;
  ph?: unknown;
  ts?: unknown;
  dur?: unknown;
  id?: unknown;
  id2?: unknown;
}

export interface TraceAnalysis {
  summary: TraceSummary;
  findings: TraceFinding[];
}

export function readTraceEvents(path: string): TraceEvent[] {
  let text: string;
  try {
    text = readInput(path, MAX_TRACE_BYTES, '; trace files are analyzed in memory').toString('utf8');
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return traceEventsOf(parseJsonInput(text, path), path);
}

export function traceEventsOf(data: unknown, path: string): TraceEvent[] {
  const events = Array.isArray(data) ? data : (data as { traceEvents?: unknown } | null)?.traceEvents;
  if (!Array.isArray(events)) throw new InputError(`${path} is not a trace: no "traceEvents" array`);
  return events.filter((e): e is TraceEvent => typeof e === 'object' && e !== null);
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : NaN);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

interface Span {
  name: string;
  start: number;
  end: number;
  /** Thread CPU time spent in the span (µs), NaN when the trace has no thread clock. */
  cpu?: number;
}

/** An async resource created during the trace (`node.async_hooks` begin event). */
interface AsyncRes {
  type: string;
  trigger: number;
  ts: number;
  /** Last time one of its callbacks began. */
  ran: number;
  alive: boolean;
}

export function analyzeTrace(events: TraceEvent[], file: string, longTaskMs = LONG_TASK_MS): TraceAnalysis {
  const longUs = longTaskMs * 1000;
  let minTs = Infinity;
  let maxTs = -Infinity;
  const candidates: Span[] = [];
  const openCallbacks = new Map<string, { ts: number; tts: number }>();
  const gcOpen = new Map<string, number>();
  const gcPairs: Span[] = [];
  const gcX: Span[] = [];
  const asyncAlive = new Map<string, string>(); // key name|id -> type
  const resources = new Map<number, AsyncRes>(); // async id -> resource created during the trace
  const destroyedAt = new Map<number, { type: string; ts: number }>(); // async id -> its destroy (any, also of older ones)
  let created = 0;
  let destroyed = 0;
  const totals = new Map<string, { count: number; totalMs: number; maxMs: number }>();

  for (const e of events) {
    const ph = str(e.ph);
    const ts = num(e.ts);
    if (ph === 'M' || !Number.isFinite(ts)) continue;
    const name = str(e.name);
    const cat = str(e.cat);
    const dur = num(e.dur);
    if (ts < minTs) minTs = ts;
    const endTs = ph === 'X' && dur > 0 ? ts + dur : ts;
    if (endTs > maxTs) maxTs = endTs;

    if (ph === 'X' && dur >= 0) {
      const t = totals.get(name) ?? { count: 0, totalMs: 0, maxMs: 0 };
      t.count++;
      t.totalMs += dur / 1000;
      t.maxMs = Math.max(t.maxMs, dur / 1000);
      totals.set(name, t);
      if (cat.includes('node') && !cat.includes('async_hooks') && dur >= longUs) {
        candidates.push({ name, start: ts, end: ts + dur, cpu: num((e as { tdur?: unknown }).tdur) });
      }
      if (/^V8\.GC/.test(name) && dur > 0) gcX.push({ name, start: ts, end: ts + dur });
      continue;
    }
    if ((ph === 'B' || ph === 'E') && (name === 'MinorGC' || name === 'MajorGC')) {
      if (ph === 'B') gcOpen.set(name, ts);
      else {
        const s = gcOpen.get(name);
        if (s !== undefined && ts >= s) gcPairs.push({ name, start: s, end: ts });
        gcOpen.delete(name);
      }
      continue;
    }
    if ((ph === 'b' || ph === 'e') && cat.includes('node.async_hooks')) {
      const id = str(e.id) || String(e.id ?? '') || str(e.id2) || str((e.id2 as { local?: unknown } | undefined)?.local);
      const key = `${name}|${id}`;
      const asyncId = id === '' ? NaN : Number(id);
      const tts = num((e as { tts?: unknown }).tts);
      if (name.endsWith('_CALLBACK')) {
        if (ph === 'b') {
          openCallbacks.set(key, { ts, tts });
          const r = resources.get(asyncId);
          if (r) r.ran = ts;
        } else {
          const s = openCallbacks.get(key);
          if (s !== undefined && ts - s.ts >= longUs) candidates.push({ name, start: s.ts, end: ts, cpu: tts - s.tts });
          openCallbacks.delete(key);
        }
      } else if (ph === 'b') {
        created++;
        asyncAlive.set(key, name);
        const data = ((e as { args?: { data?: { triggerAsyncId?: unknown; executionAsyncId?: unknown } } }).args ?? {}).data ?? {};
        const trigger = num(data.triggerAsyncId);
        if (Number.isFinite(asyncId)) resources.set(asyncId, { type: name, trigger: Number.isFinite(trigger) ? trigger : num(data.executionAsyncId), ts, ran: NaN, alive: true });
      } else {
        if (Number.isFinite(asyncId)) destroyedAt.set(asyncId, { type: name, ts });
        if (asyncAlive.delete(key)) {
          destroyed++;
          const r = resources.get(asyncId);
          if (r) r.alive = false;
        }
      }
    }
  }

  candidates.push(...busyGaps(events, longUs));
  // long tasks: outermost spans; label with the longest span nested in each
  candidates.sort((a, b) => a.start - b.start || b.end - a.end);
  const tasks: Array<Span & { inner?: string; innerUs: number }> = [];
  for (const c of candidates) {
    const last = tasks[tasks.length - 1];
    if (last && c.start >= last.start && c.end <= last.end) {
      if (c.end - c.start > last.innerUs) {
        last.inner = c.name;
        last.innerUs = c.end - c.start;
      }
      continue;
    }
    tasks.push({ ...c, innerUs: 0 });
  }
  const gc = gcPairs.length ? gcPairs : outermost(gcX);

  const findings: TraceFinding[] = [];
  // A task whose thread ran for less than the threshold was mostly waiting for a CPU (other processes had it):
  // the host was overloaded, the code did not block. Such tasks are grouped apart and reported as info.
  const byLabel = new Map<string, { count: number; totalMs: number; maxMs: number; cpuMs: number; starved: boolean; spans: Span[] }>();
  for (const t of tasks) {
    const name = t.inner && t.inner !== t.name ? `${t.name} › ${t.inner}` : t.name;
    const ms = (t.end - t.start) / 1000;
    const cpuMs = t.cpu !== undefined && Number.isFinite(t.cpu) && t.cpu >= 0 ? t.cpu / 1000 : ms;
    const starved = cpuMs < longTaskMs;
    const label = `${starved ? 'starved\u0000' : ''}${name}`;
    const g = byLabel.get(label) ?? { count: 0, totalMs: 0, maxMs: 0, cpuMs: 0, starved, spans: [] };
    g.count++;
    g.totalMs += ms;
    g.maxMs = Math.max(g.maxMs, ms);
    g.cpuMs = Math.max(g.cpuMs, cpuMs);
    g.spans.push(t);
    byLabel.set(label, g);
  }
  for (const [label, g] of [...byLabel].sort((a, b) => b[1].maxMs - a[1].maxMs)) {
    const name = label.replace(/^starved\u0000/, '');
    const f: TraceFinding = {
      kind: 'long_task',
      severity: g.starved ? 'info' : g.maxMs >= 10 * longTaskMs ? 'error' : 'warning',
      count: g.count,
      maxMs: round(g.maxMs),
      totalMs: round(g.totalMs),
      detail: g.starved
        ? `${name}: the event loop was held ${g.count} time(s), up to ${round(g.maxMs)} ms, but its thread ran at most ${round(g.cpuMs)} ms of CPU: it waited for a CPU (the host is overloaded), the code did not block`
        : `${name}: the event loop was blocked ${g.count} time(s), up to ${round(g.maxMs)} ms`,
    };
    const longest = g.spans.reduce((a, b) => (b.end - b.start > a.end - a.start ? b : a));
    f.startUs = longest.start;
    f.endUs = longest.end;
    findings.push(f);
  }
  const durationMs = Number.isFinite(minTs) ? (maxTs - minTs) / 1000 : 0;
  const gcTotal = gc.reduce((s, p) => s + (p.end - p.start) / 1000, 0);
  const gcMax = gc.reduce((m, p) => Math.max(m, (p.end - p.start) / 1000), 0);
  if (gc.length && (gcMax >= 2 * longTaskMs || (durationMs > 0 && gcTotal / durationMs >= 0.1))) {
    findings.push({
      kind: 'gc_pause',
      severity: 'warning',
      count: gc.length,
      maxMs: round(gcMax),
      totalMs: round(gcTotal),
      detail: `${gc.length} GC pause(s), ${round(gcTotal)} ms in all (${durationMs > 0 ? round((100 * gcTotal) / durationMs) : 0} % of the trace), the longest ${round(gcMax)} ms`,
    });
  }
  const byType: Record<string, number> = {};
  for (const type of asyncAlive.values()) byType[type] = (byType[type] ?? 0) + 1;
  findings.push(...asyncFindings(resources, destroyedAt, byType, minTs, maxTs));
  const maxTask = tasks.reduce((m, t) => Math.max(m, (t.end - t.start) / 1000), 0);
  const summary: TraceSummary = {
    file,
    events: events.length,
    durationMs: round(durationMs),
    longTasks: {
      count: tasks.length,
      totalMs: round(tasks.reduce((s, t) => s + (t.end - t.start) / 1000, 0)),
      maxMs: round(maxTask),
      thresholdMs: longTaskMs,
      // for the HTML report's timeline: when each long task ran, from the trace's start
      spans: tasks.slice(0, 500).map((t) => ({
        startMs: round((t.start - minTs) / 1000),
        ms: round((t.end - t.start) / 1000),
        label: t.inner && t.inner !== t.name ? `${t.name} › ${t.inner}` : t.name,
      })),
    },
    gc: { count: gc.length, totalMs: round(gcTotal), maxMs: round(gcMax) },
    async: { created, destroyed, alive: asyncAlive.size, byType },
    top: [...totals]
      .sort((a, b) => b[1].totalMs - a[1].totalMs)
      .slice(0, 10)
      .map(([name, t]) => ({ name, count: t.count, totalMs: round(t.totalMs), maxMs: round(t.maxMs) })),
  };
  return { summary, findings };
}

/**
 * JavaScript that runs without a callback span of its own (an HTTP request handler called by the parser,
 * for one) shows as a busy run on the main thread: between two event-loop boundaries (a `*_CALLBACK` span
 * edge or a Node environment phase), or until the thread went idle, every interval between consecutive events
 * saw the thread's CPU time (`tts`) advance about as much as the wall clock, or ended in an event that only
 * running JavaScript causes, so the thread never went idle.
 */
function busyGaps(events: TraceEvent[], longUs: number): Span[] {
  const main: Array<{ ts: number; end: number; tts: number; ttsEnd: number; name: string; boundary: boolean; jsBusy: boolean; jsCreated: boolean }> = [];
  for (const e of events) {
    const ts = num(e.ts);
    const tts = num((e as { tts?: unknown }).tts);
    const ph = str(e.ph);
    if (ph === 'M' || !Number.isFinite(ts) || !Number.isFinite(tts)) continue;
    const tid = (e as { tid?: unknown }).tid;
    const pid = (e as { pid?: unknown }).pid;
    if (tid !== pid) continue; // Node's main thread has tid === pid
    const dur = ph === 'X' ? num(e.dur) : 0;
    const tdur = ph === 'X' ? num((e as { tdur?: unknown }).tdur) : 0;
    const name = str(e.name);
    const cat = str(e.cat);
    const boundary = name.endsWith('_CALLBACK') || (ph === 'X' && cat.includes('node.environment'));
    const type = str(((e as { args?: { type?: unknown } }).args ?? {}).type);
    // Events that happen only while JavaScript runs, or in a GC it triggered: a gap that ends in one was a busy
    // thread that lost the CPU to other processes, not an idle one. They are a scavenge or mark-compact for
    // "allocation failure" and the end of a GC; V8's interrupt checks (category v8.execute); the end of a callback.
    const jsBusy =
      name === 'V8.GCScavenger' ||
      ((name === 'MinorGC' || name === 'MajorGC') && (ph === 'E' || (ph === 'B' && type.includes('allocation')))) ||
      (cat.includes('v8.execute') && (name.includes('Interrupt') || name === 'V8.StackGuard')) ||
      (ph === 'e' && name.endsWith('_CALLBACK'));
    // The creation of a resource only JavaScript creates (a timer, a nextTick) also means JavaScript ran, but it
    // may be the first thing JavaScript does after the loop woke up without a span (a request handler called by
    // the HTTP parser): it marks a busy gap only when the thread still got a fair share of the CPU in it.
    const jsCreated = ph === 'b' && cat.includes('node.async_hooks') && JS_CREATED.has(name);
    main.push({ ts, end: ts + (dur > 0 ? dur : 0), tts, ttsEnd: tts + (tdur > 0 ? tdur : 0), name, boundary, jsBusy, jsCreated });
  }
  main.sort((a, b) => a.ts - b.ts);
  const out: Span[] = [];
  if (main.length === 0) return out;
  let prev = main[0];
  let runStart = prev.end;
  let runStartTts = prev.ttsEnd;
  let runName = prev.name;
  for (let i = 1; i < main.length; i++) {
    const cur = main[i];
    const wall = cur.ts - prev.end;
    const cpu = cur.tts - prev.ttsEnd;
    // idle: the clock ran on but the thread did not (on a busy machine a running thread also loses CPU
    // time, so a gap that ends in an event only running JavaScript causes still counts as busy)
    if (wall > 2000 && cpu < 0.5 * wall && !cur.jsBusy && !(cur.jsCreated && cpu >= 0.2 * wall)) {
      // the thread was idle in between: the run before the gap ended where the gap began
      if (prev.end - runStart >= longUs) out.push({ name: `JavaScript after ${runName || 'an event'}`, start: runStart, end: prev.end, cpu: prev.ttsEnd - runStartTts });
      runStart = cur.ts;
      runStartTts = cur.tts;
      runName = cur.name;
    }
    if (cur.boundary) {
      if (cur.ts - runStart >= longUs) out.push({ name: `JavaScript after ${runName || 'an event'}`, start: runStart, end: cur.ts, cpu: cur.tts - runStartTts });
      runStart = cur.end;
      runStartTts = cur.ttsEnd;
      runName = cur.name;
    }
    if (cur.end >= prev.end) prev = cur;
  }
  return out;
}

/** Resources that stand for a connection: what a stream's timers and callbacks descend from. */
const CONNECTION_TYPES = new Set(['HTTPINCOMINGMESSAGE', 'HTTPCLIENTREQUEST', 'TCPWRAP', 'TLSWRAP', 'PIPEWRAP', 'HTTP2SESSION', 'HTTP2STREAM']);
/** A resource whose owner closed this long before the trace ended, and still alive, is reported even if it never ran since. */
const CLOSED_GRACE_US = 1_000_000;
/** A group of resources of one type and one owner "grows" when at least this many, created over this much of the trace, are alive. */
const GROWTH_MIN = 3;
const GROWTH_SPAN = 0.25;

/**
 * Async resources alive at the end of the trace, judged by what owns them (the first connection among their
 * trigger ancestors, else the oldest ancestor the trace knows):
 * - of a closed connection: its connection's resource was destroyed during the trace and this one lives on, and
 *   ran after the close (a producer that never stopped) or the close was at least 1 s before the end;
 * - growing: at least 3 of one type and one owner, created over at least a quarter of the trace (and 100 ms),
 *   none of them destroyed — more than steady traffic leaves alive (an open stream keeps one timer, a keep-alive
 *   socket one timeout, a burst of in-flight requests starts together);
 * both are warnings. The rest is traffic in flight and is reported as info from 10 of a type. Promises, and
 * handles (`…WRAP`, destroyed only when garbage-collected) and connections themselves, are never warnings:
 * the heap snapshot is the evidence for those.
 */
function asyncFindings(
  resources: Map<number, AsyncRes>,
  destroyedAt: Map<number, { type: string; ts: number }>,
  byType: Record<string, number>,
  minTs: number,
  maxTs: number,
): TraceFinding[] {
  const typeOf = (id: number): string | undefined => resources.get(id)?.type ?? destroyedAt.get(id)?.type;
  const ownerMemo = new Map<number, number>();
  const ownerOf = (id: number): number => {
    const chain: number[] = [];
    let cur = resources.get(id)?.trigger ?? NaN;
    let owner = cur;
    for (let hops = 0; hops < 100_000; hops++) {
      if (!Number.isFinite(cur)) break;
      const memo = ownerMemo.get(cur);
      if (memo !== undefined) {
        owner = memo;
        break;
      }
      owner = cur;
      const t = typeOf(cur);
      if ((t !== undefined && CONNECTION_TYPES.has(t)) || !resources.has(cur)) break;
      chain.push(cur);
      const next = resources.get(cur)!.trigger;
      if (next === cur) break;
      cur = next;
    }
    for (const c of chain) ownerMemo.set(c, owner);
    return owner;
  };
  const span = Number.isFinite(minTs) ? maxTs - minTs : 0;
  const per = new Map<string, { closed: number; growing: number; info: number }>();
  const groups = new Map<string, AsyncRes[]>();
  const stat = (type: string) => {
    let s = per.get(type);
    if (!s) per.set(type, (s = { closed: 0, growing: 0, info: 0 }));
    return s;
  };
  for (const [id, r] of resources) {
    if (!r.alive) continue;
    const type = r.type;
    if (type === 'PROMISE' || type.endsWith('WRAP') || CONNECTION_TYPES.has(type)) continue;
    const owner = ownerOf(id);
    const ownerType = typeOf(owner);
    const closed = ownerType !== undefined && CONNECTION_TYPES.has(ownerType) ? destroyedAt.get(owner) : undefined;
    if (closed && (r.ran > closed.ts || maxTs - closed.ts >= CLOSED_GRACE_US)) {
      stat(type).closed++;
      continue;
    }
    const key = `${type}\u0000${owner}`;
    const g = groups.get(key);
    if (g) g.push(r);
    else groups.set(key, [r]);
  }
  for (const [key, g] of groups) {
    const type = key.slice(0, key.indexOf('\u0000'));
    let lo = Infinity;
    let hi = -Infinity;
    for (const r of g) {
      lo = Math.min(lo, r.ts);
      hi = Math.max(hi, r.ts);
    }
    if (g.length >= GROWTH_MIN && hi - lo >= Math.max(100_000, GROWTH_SPAN * span)) stat(type).growing += g.length;
    else stat(type).info += g.length;
  }
  const out: TraceFinding[] = [];
  for (const [type, s] of [...per].sort((a, b) => b[1].closed + b[1].growing - (a[1].closed + a[1].growing))) {
    const n = s.closed + s.growing;
    if (n === 0) continue;
    const why = [
      s.closed ? `${s.closed} belong to connections that closed during the trace` : '',
      s.growing ? `${s.growing} kept being created by one owner and never destroyed` : '',
    ].filter(Boolean);
    out.push({ kind: 'undestroyed_async', severity: 'warning', count: n, detail: `${n} ${type} resource(s) still alive at the end of the trace: ${why.join('; ')}` });
  }
  for (const [type, n] of Object.entries(byType).sort((a, b) => b[1] - a[1])) {
    if (type === 'PROMISE' || n < ASYNC_ALIVE_THRESHOLD) continue;
    const s = per.get(type);
    const rest = n - (s ? s.closed + s.growing : 0);
    if (rest < ASYNC_ALIVE_THRESHOLD) continue;
    out.push({
      kind: 'undestroyed_async',
      severity: 'info',
      count: rest,
      detail: `${rest} ${type} resource(s) created during the trace and alive at its end, as the traffic explains (open connections, requests in flight${
        type.endsWith('WRAP') ? '; handles are destroyed only when garbage-collected' : ''
      })`,
    });
  }
  return out;
}

/** Async resource types that only JavaScript creates (never the event loop on waking up). */
const JS_CREATED = new Set(['Timeout', 'TickObject', 'Immediate', 'PROMISE', 'Microtask']);

function outermost(spans: Span[]): Span[] {
  spans.sort((a, b) => a.start - b.start || b.end - a.end);
  const out: Span[] = [];
  for (const s of spans) {
    const last = out[out.length - 1];
    if (last && s.start >= last.start && s.end <= last.end) continue;
    out.push(s);
  }
  return out;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

export function analyzeTraceFile(path: string, longTaskMs?: number): TraceAnalysis {
  return analyzeTrace(readTraceEvents(path), path, longTaskMs);
}
