// streamscope's heap analyzer on one file; prints wall time, CPU time and peak RSS as JSON.
import { analyzeHeapFile } from '../../diagnostics/heap/analyze.js';

const file = process.argv[2];
const t0 = performance.now();
const r = analyzeHeapFile(file);
const ms = performance.now() - t0;
const cpu = process.cpuUsage();
process.stdout.write(
  `${JSON.stringify({ tool: 'streamscope', ms, cpuMs: (cpu.user + cpu.system) / 1000, maxRssKB: process.resourceUsage().maxRSS, nodes: r.summary.nodes, edges: r.summary.edges, findings: r.findings.map((f) => `${f.kind}:${f.count}`) })}\n`,
);
