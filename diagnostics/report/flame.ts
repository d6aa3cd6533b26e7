/**
 * Icicle graphs (flame graphs drawn top-down) of a CPU profile and a sampled heap profile, and a timeline of a
 * trace's long tasks, as inline SVG for the HTML report (no script: the report's CSP forbids it; each frame's
 * full name and value are in its `<title>`, which browsers show on hover).
 */
import { formatBytes } from '../progress.js';

const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

interface FNode {
  name: string;
  where: string;
  self: number;
  total: number;
  children: FNode[];
}

interface CallFrame {
  functionName?: string;
  url?: string;
  lineNumber?: number;
}

const label = (f: CallFrame | undefined): { name: string; where: string } => {
  const name = f?.functionName || '(anonymous)';
  const url = (f?.url ?? '').replace(/^file:\/\//, '');
  return { name, where: url ? `${url.split('/').slice(-2).join('/')}:${(f?.lineNumber ?? -1) + 1}` : '' };
};

function finish(n: FNode): number {
  n.total = n.self + n.children.reduce((s, c) => s + finish(c), 0);
  n.children.sort((a, b) => b.total - a.total);
  return n.total;
}

/** A V8 `.cpuprofile` as a tree whose values are self time (µs): each sample stands for the time until the next. */
export function cpuTree(p: unknown): FNode | null {
  const prof = p as { nodes?: Array<{ id: number; callFrame?: CallFrame; children?: number[]; hitCount?: number }>; samples?: number[]; timeDeltas?: number[]; endTime?: number; startTime?: number };
  if (!Array.isArray(prof?.nodes) || prof.nodes.length === 0) return null;
  const hits = new Map<number, number>();
  const samples = Array.isArray(prof.samples) ? prof.samples : [];
  const deltas = Array.isArray(prof.timeDeltas) ? prof.timeDeltas : [];
  if (samples.length > 0) {
    const mean = ((prof.endTime ?? 0) - (prof.startTime ?? 0)) / samples.length;
    for (let i = 0; i < samples.length; i++) {
      const dt = i + 1 < deltas.length ? Math.max(0, Number(deltas[i + 1]) || 0) : mean;
      hits.set(samples[i] as number, (hits.get(samples[i] as number) ?? 0) + dt);
    }
  } else for (const n of prof.nodes) hits.set(n.id, n.hitCount ?? 0);
  const byId = new Map<number, FNode>();
  const childIds = new Set<number>();
  for (const n of prof.nodes) {
    byId.set(n.id, { ...label(n.callFrame), self: hits.get(n.id) ?? 0, total: 0, children: [] });
    for (const c of n.children ?? []) childIds.add(c);
  }
  for (const n of prof.nodes) for (const c of n.children ?? []) byId.get(n.id)?.children.push(byId.get(c) as FNode);
  const root = prof.nodes.find((n) => !childIds.has(n.id));
  if (!root) return null;
  const r = byId.get(root.id) as FNode;
  finish(r);
  return r;
}

/** A sampled heap profile as a tree whose values are live bytes. */
export function heapTree(p: unknown): FNode | null {
  const head = (p as { head?: unknown })?.head;
  if (typeof head !== 'object' || head === null) return null;
  const conv = (n: { callFrame?: CallFrame; selfSize?: number; children?: unknown[] }, depth: number): FNode => ({
    ...label(n.callFrame),
    self: typeof n.selfSize === 'number' ? n.selfSize : 0,
    total: 0,
    children: depth > 200 ? [] : (n.children ?? []).map((c) => conv(c as never, depth + 1)),
  });
  const r = conv(head as never, 0);
  finish(r);
  return r;
}

const PALETTE = ['#e4572e', '#f3a712', '#e9c46a', '#f4a261', '#ee964b', '#f95738', '#ffb347', '#f6bd60'];
const HEAP_PALETTE = ['#4f7cac', '#5e8fbd', '#6aa6d8', '#3c6e9f', '#7fb3d5', '#5499c7', '#2e86c1', '#85c1e9'];

/**
 * An icicle: the root across the top, each frame under its caller, as wide as its share of the total.
 * Frames narrower than a pixel are left out; names are drawn where they fit.
 */
export function icicle(id: string, title: string, root: FNode | null, kind: 'cpu' | 'heap', unit: (v: number) => string): string {
  const W = 1100;
  const rowH = 18;
  const maxDepth = 40;
  if (!root || root.total <= 0) return `<figure id="${id}"><figcaption>${esc(title)}</figcaption><p>no samples</p></figure>`;
  const rects: string[] = [];
  let depthSeen = 0;
  const colors = kind === 'cpu' ? PALETTE : HEAP_PALETTE;
  const draw = (n: FNode, x: number, depth: number): void => {
    const w = (n.total / root.total) * W;
    if (w < 1 || depth > maxDepth) return;
    depthSeen = Math.max(depthSeen, depth);
    const y = depth * rowH;
    const text = n.where ? `${n.name} ${n.where}` : n.name;
    const pct = ((n.total / root.total) * 100).toFixed(1);
    const color = colors[(n.name.length + depth) % colors.length] as string;
    const fit = Math.floor((w - 6) / 7);
    const shown = fit >= 3 ? (text.length > fit ? `${text.slice(0, fit - 1)}…` : text) : '';
    rects.push(
      `<g class="frame" data-name="${esc(n.name)}"><rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${rowH - 1}" fill="${color}"><title>${esc(
        `${text}: ${unit(n.total)} (${pct} %), self ${unit(n.self)}`,
      )}</title></rect>${shown ? `<text x="${(x + 3).toFixed(1)}" y="${y + 13}">${esc(shown)}</text>` : ''}</g>`,
    );
    let cx = x;
    for (const c of n.children) {
      draw(c, cx, depth + 1);
      cx += (c.total / root.total) * W;
    }
  };
  draw(root, 0, 0);
  const h = (depthSeen + 1) * rowH;
  return `<figure id="${id}"><figcaption>${esc(title)}</figcaption><svg class="icicle" role="img" aria-label="${esc(title)}" width="${W}" height="${h}" viewBox="0 0 ${W} ${h}">${rects.join('')}</svg></figure>`;
}

export const cpuUnit = (v: number): string => `${(v / 1000).toFixed(1)} ms`;
export const heapUnit = (v: number): string => formatBytes(v);

/** Long tasks on the trace's time axis: where in the window the event loop was blocked, and for how long. */
export function longTaskTimeline(spans: Array<{ startMs: number; ms: number; label: string }>, durationMs: number): string {
  const W = 1100;
  const H = 60;
  const total = Math.max(1, durationMs, ...spans.map((s) => s.startMs + s.ms));
  const ticks: string[] = [];
  const step = niceStep(total);
  for (let t = 0; t <= total; t += step) {
    const x = (t / total) * W;
    ticks.push(`<line x1="${x.toFixed(1)}" y1="30" x2="${x.toFixed(1)}" y2="36" stroke="#999"/><text x="${(x + 2).toFixed(1)}" y="50">${esc(t >= 1000 ? `${(t / 1000).toFixed(t % 1000 === 0 ? 0 : 1)} s` : `${t} ms`)}</text>`);
  }
  const rects = spans
    .map(
      (s) =>
        `<rect class="long-task" x="${((s.startMs / total) * W).toFixed(1)}" y="4" width="${Math.max(2, (s.ms / total) * W).toFixed(1)}" height="24" fill="${s.ms >= 500 ? '#c0392b' : '#d68910'}"><title>${esc(`${s.label}: ${s.ms} ms at ${s.startMs} ms`)}</title></rect>`,
    )
    .join('');
  return `<figure id="long-tasks"><figcaption>Long tasks over the trace (${spans.length})</figcaption><svg role="img" aria-label="Long tasks over the trace" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}"><line x1="0" y1="30" x2="${W}" y2="30" stroke="#999"/>${rects}${ticks.join('')}</svg></figure>`;
}

function niceStep(total: number): number {
  const raw = total / 8;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}
