// streamscope's heap analyzer on one file; prints time and peak RSS as JSON.
import { analyzeHeapFile } from '../../diagnostics/heap/analyze.js';

const file = process.argv[2];
const t0 = performance.now();
const r = analyzeHeapFile(file);
const ms = performance.now() - t0;
process.stdout.write(
  `${JSON.stringify({ tool: 'streamscope', ms, maxRssKB: process.resourceUsage().maxRSS, nodes: r.summary.nodes, findings: r.findings.map((f) => `${f.kind}:${f.count}`) })}\n`,
);
