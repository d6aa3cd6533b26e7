/**
 * CPU profile analysis (V8 `Profiler` format, `cpu.cpuprofile`): functions ranked by self time.
 * Self time comes from `samples` and `timeDeltas` when present, else from `hitCount`s spread over the
 * profile's duration.
 */
import { InputError } from '../heap/input-error.js';
import { readJsonInput } from '../transport/safe-fs.js';
import type { CpuSummary } from '../report/types.js';
import { sampleRoutesOf, type CpuProfile } from '../profile/pprof.js';

interface ProfileNode {
  id: number;
  callFrame?: { functionName?: string; url?: string; lineNumber?: number };
  hitCount?: number;
}

const MAX_PROFILE_BYTES = 400 * 1024 * 1024;

export function analyzeCpuProfileFile(path: string, top = 15): CpuSummary {
  let data: unknown;
  try {
    data = readJsonInput(path, MAX_PROFILE_BYTES);
  } catch (err) {
    if (err instanceof InputError) throw err;
    if (err instanceof SyntaxError) throw new InputError(`${path} is not valid JSON`);
    throw new InputError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return analyzeCpuProfile(data, path, top);
}

export function isCpuProfile(data: unknown): boolean {
  return typeof data === 'object' && data !== null && Array.isArray((data as { nodes?: unknown }).nodes) && 'startTime' in data;
}

export function analyzeCpuProfile(data: unknown, file: string, top = 15): CpuSummary {
  if (!isCpuProfile(data)) throw new InputError(`${file} is not a CPU profile: no "nodes"/"startTime"`);
  const p = data as { nodes: unknown[]; startTime: unknown; endTime: unknown; samples?: unknown; timeDeltas?: unknown };
  const nodes = p.nodes.filter((n): n is ProfileNode => typeof n === 'object' && n !== null && typeof (n as ProfileNode).id === 'number');
  const start = typeof p.startTime === 'number' ? p.startTime : 0;
  const end = typeof p.endTime === 'number' ? p.endTime : start;
  const durationUs = Math.max(0, end - start);
  const selfUs = new Map<number, number>();
  const samples = Array.isArray(p.samples) ? (p.samples as unknown[]) : [];
  const deltas = Array.isArray(p.timeDeltas) ? (p.timeDeltas as unknown[]) : [];
  if (samples.length && deltas.length === samples.length) {
    // the time of sample i lasts until sample i + 1
    for (let i = 0; i < samples.length; i++) {
      const id = samples[i];
      const next = i + 1 < deltas.length ? deltas[i + 1] : 0;
      if (typeof id !== 'number' || typeof next !== 'number' || !Number.isFinite(next) || next < 0) continue;
      selfUs.set(id, (selfUs.get(id) ?? 0) + next);
    }
  } else {
    const hits = nodes.reduce((s, n) => s + (typeof n.hitCount === 'number' ? n.hitCount : 0), 0);
    for (const n of nodes) if (hits > 0 && typeof n.hitCount === 'number') selfUs.set(n.id, (n.hitCount / hits) * durationUs);
  }
  const byFn = new Map<string, { functionName: string; url: string; line: number; us: number }>();
  for (const n of nodes) {
    const us = selfUs.get(n.id);
    if (!us) continue;
    const functionName = n.callFrame?.functionName || '(anonymous)';
    const url = n.callFrame?.url ?? '';
    const line = (n.callFrame?.lineNumber ?? -1) + 1;
    const key = `${functionName}\u0000${url}\u0000${line}`;
    const f = byFn.get(key) ?? { functionName, url, line, us: 0 };
    f.us += us;
    byFn.set(key, f);
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1;
  const routes = routeShares(data as CpuProfile, samples, deltas, total);
  return {
    ...(routes ? { routes } : {}),
    file,
    durationMs: Math.round(durationUs / 100) / 10,
    samples: samples.length,
    top: [...byFn.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({
        functionName: f.functionName,
        url: f.url,
        line: f.line,
        selfMs: Math.round(f.us / 100) / 10,
        selfPercent: Math.round((1000 * f.us) / total) / 10,
      })),
  };
}

/**
 * CPU per stream route, from the agent's continuous profiler (its samples carry the route whose code ran):
 * each route's time and share of the profile's sampled time, largest first; undefined for a profile without labels.
 */
function routeShares(p: CpuProfile, samples: unknown[], deltas: unknown[], total: number): CpuSummary['routes'] {
  const labeled = sampleRoutesOf(p);
  if (labeled === undefined || deltas.length !== samples.length) return undefined;
  const us = new Map<number, number>();
  for (let i = 0; i < samples.length; i++) {
    const r = labeled.sampleRoutes[i];
    const next = i + 1 < deltas.length ? deltas[i + 1] : 0;
    if (typeof r !== 'number' || r <= 0 || r > labeled.routes.length || typeof next !== 'number' || !Number.isFinite(next) || next < 0) continue;
    us.set(r, (us.get(r) ?? 0) + next);
  }
  return [...us.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([r, t]) => ({ route: labeled.routes[r - 1] as string, selfMs: Math.round(t / 100) / 10, selfPercent: Math.round((1000 * t) / total) / 10 }));
}
