/** The default, human-readable rendering of a report (what `diag analyze` prints without `--json`). */
import { formatBytes } from '../progress.js';
import type { Report, ReportFinding } from './types.js';

/** Other paths printed per heap finding; `--json` has up to 20. */
const MAX_ALSO_LINES = 5;

export function formatPath(path: string[]): string {
  return path.join(' → ');
}

function findingLine(f: ReportFinding): string[] {
  const sev = f.severity === 'error' ? 'ERROR  ' : f.severity === 'warning' ? 'WARNING' : 'INFO   ';
  if (f.source === 'streams') {
    return [`${sev} ${f.kind} stream ${f.streamId} ${f.method} ${f.route} (age ${Math.round(f.ageMs / 1000)} s): ${f.detail}`];
  }
  if (f.source === 'heap') {
    const extra = f.queuedBytes !== undefined ? `, ${formatBytes(f.queuedBytes)} queued` : '';
    // one place in the program reached more ways: the path most share first, then the others (the first few)
    const also = (f.alsoVia ?? []).slice(0, MAX_ALSO_LINES);
    const onPath = f.countOnPath ?? f.count;
    const rest = f.count - onPath - also.reduce((s, a) => s + a.count, 0);
    return [
      `${sev} ${f.kind} ×${f.count}: ${formatBytes(f.retainedSize)} retained${extra} — ${f.detail}`,
      `        ${formatPath(f.path)}${also.length > 0 ? ` (×${onPath})` : ''}`,
      ...also.map((a) => `        also reachable through (×${a.count}): ${formatPath(a.path)}`),
      ...(rest > 0 ? [`        … and ${rest} more through other paths (--json)`] : []),
    ];
  }
  return [`${sev} ${f.kind} ×${f.count}: ${f.detail}`];
}

export function renderText(r: Report): string {
  const lines: string[] = [];
  lines.push(`diag analyze ${r.source.target}`);
  const m = r.source.manifest;
  if (m) lines.push(`capture of pid ${String(m.pid ?? '?')} (node ${String(m.nodeVersion ?? '?')}) at ${String(m.time ?? '?')} via ${String(m.transport ?? '?')}`);
  lines.push('');
  if (r.findings.length === 0) lines.push('No findings.');
  else {
    lines.push(`Findings (${r.findings.length}):`);
    for (const f of r.findings) for (const l of findingLine(f)) lines.push(`  ${l}`);
  }
  const s = r.summary;
  if (s.routes?.length) {
    lines.push('', `Streams: ${s.streams} open`);
    for (const x of s.routes.slice(0, 15)) {
      lines.push(`  ${x.route.padEnd(30)} ${String(x.streams).padStart(5)} streams  oldest ${Math.round(x.maxAgeMs / 1000)} s  buffered ${formatBytes(x.bufferedBytes)}`);
    }
  }
  if (s.heap) {
    const h = s.heap;
    lines.push(
      '',
      `Heap: ${formatBytes(h.fileSize)} snapshot, ${h.nodes.toLocaleString('en')} objects, ${formatBytes(h.totalSize)} reachable`,
      `  ServerResponse ${h.responses.total} (${h.responses.closed} of closed connections), IncomingMessage ${h.requests.total} (${h.requests.closed}), Socket ${h.sockets.total} (${h.sockets.closed} closed); ${formatBytes(h.queuedBytes)} queued on responses`,
      '  Retained by constructor:',
    );
    for (const c of h.byConstructor.slice(0, 10)) {
      lines.push(`    ${formatBytes(c.retainedSize).padStart(10)}  ${String(c.count).padStart(8)} × ${c.name}`);
    }
  }
  if (s.trace) {
    const t = s.trace;
    lines.push(
      '',
      `Trace: ${t.events} events over ${t.durationMs} ms`,
      `  long tasks (≥ ${t.longTasks.thresholdMs} ms): ${t.longTasks.count}, longest ${t.longTasks.maxMs} ms`,
      `  GC pauses: ${t.gc.count}, ${t.gc.totalMs} ms in all, longest ${t.gc.maxMs} ms`,
      `  async resources: ${t.async.created} created, ${t.async.destroyed} destroyed, ${t.async.alive} still alive${
        Object.keys(t.async.byType).length ? ` (${Object.entries(t.async.byType).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''
      }`,
    );
  }
  if (s.cpu) {
    lines.push('', `CPU profile: ${s.cpu.durationMs} ms, ${s.cpu.samples} samples; top self time:`);
    for (const f of s.cpu.top.slice(0, 10)) {
      lines.push(`  ${String(f.selfPercent).padStart(5)} %  ${String(f.selfMs).padStart(8)} ms  ${f.functionName}${f.url ? ` ${f.url}:${f.line}` : ''}`);
    }
    if (s.cpu.routes?.length) {
      lines.push('  CPU by stream route (code run for a stream):');
      for (const r of s.cpu.routes.slice(0, 10)) lines.push(`  ${String(r.selfPercent).padStart(5)} %  ${String(r.selfMs).padStart(8)} ms  ${r.route}`);
    }
  }
  if (s.heapProfile) {
    const h = s.heapProfile;
    lines.push('', `Heap profile (sampled): ${formatBytes(h.totalBytes)} live in ${h.samples} samples; top allocation sites by live bytes:`);
    for (const x of h.sites.slice(0, 10)) {
      lines.push(`  ${String(x.percent).padStart(5)} %  ${formatBytes(x.bytes).padStart(10)}  ${x.site}`);
      if (x.stack.length > 1) lines.push(`           ${x.stack.slice(1, 5).join(' ← ')}`);
    }
    if (s.routes?.length) lines.push(`  routes the agent saw: ${s.routes.slice(0, 8).map((r) => `${r.route} (${r.streams})`).join(', ')}`);
    if (h.grown && h.base) {
      lines.push('', `Grown since ${h.base.file} (${formatBytes(h.base.totalBytes)} → ${formatBytes(h.totalBytes)}):`);
      if (h.grown.length === 0) lines.push('  no site grew');
      for (const g of h.grown.slice(0, 10)) lines.push(`  +${formatBytes(g.growth).padStart(10)}  (${formatBytes(g.baseBytes)} → ${formatBytes(g.bytes)})  ${g.site}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
