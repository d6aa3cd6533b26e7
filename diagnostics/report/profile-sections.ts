/** The HTML report's profile sections: CPU and heap icicles, the long-task timeline, the heap profile's top sites. */
import { formatBytes } from '../progress.js';
import { cpuTree, cpuUnit, heapTree, heapUnit, icicle, longTaskTimeline } from './flame.js';
import type { Report } from './types.js';

const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

export function profileSections(r: Report): string[] {
  const parts: string[] = [];
  const t = r.summary.trace;
  if (t?.longTasks.spans && t.longTasks.spans.length > 0) parts.push(longTaskTimeline(t.longTasks.spans, t.durationMs));
  if (r.profiles?.cpu !== undefined) {
    parts.push('<h2>CPU profile</h2>', icicle('cpu-flame', 'CPU profile (icicle: callers above callees, width = time)', cpuTree(r.profiles.cpu), 'cpu', cpuUnit));
  }
  const h = r.summary.heapProfile;
  if (h && r.profiles?.heap !== undefined) {
    parts.push(
      `<h2>Heap profile (sampled)</h2><p>${esc(formatBytes(h.totalBytes))} live in ${h.samples} samples.</p>`,
      `<table id="heap-sites"><thead><tr><th>live</th><th>share</th><th>allocation site</th>${h.grown ? '<th>grew</th>' : ''}</tr></thead><tbody>${h.sites
        .slice(0, 15)
        .map((x) => {
          const g = h.grown?.find((y) => y.site === x.site);
          return `<tr class="site"><td>${esc(formatBytes(x.bytes))}</td><td>${x.percent} %</td><td>${esc(x.site)}</td>${h.grown ? `<td>${g ? `+${esc(formatBytes(g.growth))}` : ''}</td>` : ''}</tr>`;
        })
        .join('')}</tbody></table>`,
      icicle('heap-flame', 'Heap profile (icicle: width = live bytes allocated under the frame)', heapTree(r.profiles.heap), 'heap', heapUnit),
    );
  }
  return parts;
}
