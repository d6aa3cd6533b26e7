/**
 * `--html FILE`: one self-contained page. Inline CSS and SVG only (no script, no external request; the
 * Content-Security-Policy forbids them): stream ages and buffered bytes by route, retained memory by
 * constructor, and the findings with their retainer paths.
 */
import { formatBytes } from '../progress.js';
import type { Report, ReportFinding } from './types.js';
import { profileSections } from './profile-sections.js';

const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

interface Bar {
  label: string;
  value: number;
  text: string;
}

/** A horizontal bar chart as inline SVG. */
export function barChart(title: string, bars: Bar[], color: string): string {
  const rowH = 22;
  const labelW = 260;
  const chartW = 420;
  const h = Math.max(1, bars.length) * rowH + 8;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const rows = bars
    .map((b, i) => {
      const w = Math.max(1, Math.round((b.value / max) * chartW));
      const y = 4 + i * rowH;
      return `<g><text x="${labelW - 6}" y="${y + 15}" text-anchor="end">${esc(b.label.length > 38 ? `${b.label.slice(0, 37)}…` : b.label)}</text><rect x="${labelW}" y="${y + 3}" width="${w}" height="${rowH - 6}" fill="${color}"><title>${esc(`${b.label}: ${b.text}`)}</title></rect><text x="${labelW + w + 6}" y="${y + 15}">${esc(b.text)}</text></g>`;
    })
    .join('');
  const empty = bars.length === 0 ? `<text x="10" y="18">no data</text>` : '';
  return `<figure><figcaption>${esc(title)}</figcaption><svg role="img" aria-label="${esc(title)}" width="${labelW + chartW + 120}" height="${h}" viewBox="0 0 ${labelW + chartW + 120} ${h}">${rows}${empty}</svg></figure>`;
}

function findingRow(f: ReportFinding): string {
  const sev = `<span class="sev ${f.severity}">${f.severity}</span>`;
  if (f.source === 'heap') {
    const steps = (path: string[]): string =>
      path
        .map((p, i) => (i % 2 === 0 ? `<span class="node">${esc(p)}</span>` : `<span class="edge">${esc(p)}</span>`))
        .join('<span class="arrow"> → </span>');
    const queued = f.queuedBytes !== undefined ? `, ${esc(formatBytes(f.queuedBytes))} queued` : '';
    const also = (f.alsoVia ?? []).map((a) => `<div class="path also">also reachable through (×${a.count}): ${steps(a.path)}</div>`).join('');
    return `<tr class="finding" data-kind="${esc(f.kind)}"><td>${sev}</td><td>${esc(f.kind)}</td><td>${f.count}</td><td>${esc(formatBytes(f.retainedSize))} retained${queued}<br>${esc(f.detail)}<div class="path">${steps(f.path)}</div>${also}</td></tr>`;
  }
  if (f.source === 'streams') {
    return `<tr class="finding" data-kind="${esc(f.kind)}"><td>${sev}</td><td>${esc(f.kind)}</td><td>1</td><td>stream ${esc(f.streamId)} ${esc(f.method)} ${esc(f.route)}, age ${esc(Math.round(f.ageMs / 1000))} s: ${esc(f.detail)}${f.stack ? `<pre>${esc(f.stack)}</pre>` : ''}</td></tr>`;
  }
  return `<tr class="finding" data-kind="${esc(f.kind)}"><td>${sev}</td><td>${esc(f.kind)}</td><td>${f.count}</td><td>${esc(f.detail)}</td></tr>`;
}

export function renderHtml(r: Report): string {
  const s = r.summary;
  const routes = s.routes ?? [];
  const parts: string[] = [];
  parts.push(`<h1>diag analyze</h1><p class="muted">${esc(r.source.target)}${
    r.source.manifest ? ` — pid ${esc(r.source.manifest.pid)}, node ${esc(r.source.manifest.nodeVersion)}, ${esc(r.source.manifest.time)}` : ''
  }</p>`);
  const errors = r.findings.filter((f) => f.severity === 'error').length;
  parts.push(
    `<section class="cards"><div><b>${r.findings.length}</b> findings (${errors} errors)</div><div><b>${s.streams}</b> open streams</div><div><b>${s.responses}</b> responses</div>${
      s.heap ? `<div><b>${esc(formatBytes(s.heap.totalSize))}</b> reachable heap</div>` : ''
    }${s.trace ? `<div><b>${s.trace.longTasks.count}</b> long tasks</div>` : ''}</section>`,
  );
  parts.push(
    `<h2>Findings</h2>${
      r.findings.length
        ? `<table id="findings"><thead><tr><th>severity</th><th>kind</th><th>count</th><th>what and retainer path</th></tr></thead><tbody>${r.findings.map(findingRow).join('')}</tbody></table>`
        : '<p id="findings">No findings.</p>'
    }`,
  );
  if (routes.length) {
    parts.push('<h2>Streams by route</h2>');
    parts.push(
      barChart(
        'Oldest stream age by route',
        routes.slice(0, 20).map((x) => ({ label: x.route, value: x.maxAgeMs, text: `${Math.round(x.maxAgeMs / 1000)} s (${x.streams} streams)` })),
        '#4f7cac',
      ),
    );
    parts.push(
      barChart(
        'Buffered bytes by route',
        routes.slice(0, 20).map((x) => ({ label: x.route, value: x.bufferedBytes, text: formatBytes(x.bufferedBytes) })),
        '#c0504d',
      ),
    );
  }
  if (s.heap) {
    const h = s.heap;
    parts.push(
      `<h2>Heap</h2><p>${esc(formatBytes(h.fileSize))} snapshot, ${h.nodes.toLocaleString('en')} objects, ${esc(formatBytes(h.totalSize))} reachable. ServerResponse ${h.responses.total} (${h.responses.closed} of closed connections), IncomingMessage ${h.requests.total} (${h.requests.closed}), Socket ${h.sockets.total} (${h.sockets.closed} closed); ${esc(formatBytes(h.queuedBytes))} queued on responses.</p>`,
    );
    parts.push(
      barChart(
        'Retained memory by constructor',
        h.byConstructor.slice(0, 20).map((c) => ({ label: c.name, value: c.retainedSize, text: `${formatBytes(c.retainedSize)} (${c.count})` })),
        '#9bbb59',
      ),
    );
  }
  if (s.trace) {
    const t = s.trace;
    parts.push(
      `<h2>Trace</h2><p>${t.events} events over ${t.durationMs} ms. Long tasks (≥ ${t.longTasks.thresholdMs} ms): ${t.longTasks.count}, longest ${t.longTasks.maxMs} ms. GC pauses: ${t.gc.count}, ${t.gc.totalMs} ms in all. Async resources: ${t.async.created} created, ${t.async.destroyed} destroyed, ${t.async.alive} alive.</p>`,
    );
    parts.push(
      barChart(
        'Trace events by total time',
        t.top.map((x) => ({ label: x.name, value: x.totalMs, text: `${x.totalMs} ms (${x.count})` })),
        '#8064a2',
      ),
    );
  }
  if (s.cpu) {
    parts.push(
      barChart(
        'CPU self time by function',
        s.cpu.top.map((f) => ({ label: `${f.functionName} ${f.url.split('/').pop() ?? ''}:${f.line}`, value: f.selfMs, text: `${f.selfMs} ms (${f.selfPercent} %)` })),
        '#f79646',
      ),
    );
  }
  parts.push(...profileSections(r));
  const css = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}h1{margin:0}h2{margin-top:28px;border-bottom:1px solid #ddd}
.muted{color:#666}.cards{display:flex;gap:12px;flex-wrap:wrap}.cards div{border:1px solid #ddd;border-radius:6px;padding:8px 14px}.cards b{font-size:20px}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:6px;text-align:left;vertical-align:top}
.sev{padding:1px 6px;border-radius:4px;color:#fff}.sev.error{background:#c0392b}.sev.warning{background:#d68910}.sev.info{background:#7f8c8d}
.path{font-family:ui-monospace,monospace;font-size:12px;margin-top:4px;word-break:break-word}.edge{color:#7d3c98}.node{color:#1f618d}.arrow{color:#999}
figure{margin:12px 0}figcaption{font-weight:600;margin-bottom:4px}svg text{font:12px system-ui,sans-serif;fill:#333}svg.icicle text{font:11px ui-monospace,monospace;fill:#111;pointer-events:none}pre{white-space:pre-wrap;font-size:12px}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>diag analyze — ${esc(r.source.target)}</title><style>${css}</style></head>
<body>${parts.join('\n')}</body></html>
`;
}
