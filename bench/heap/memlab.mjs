// @memlab/heap-analysis on one file (parse + dominators + retained sizes); prints wall time, CPU time and peak RSS as JSON.
import { getFullHeapFromFile } from '@memlab/heap-analysis';

const file = process.argv[2];
const t0 = performance.now();
const heap = await getFullHeapFromFile(file);
let responses = 0;
heap.nodes.forEach((n) => {
  if (n.name === 'ServerResponse' && n.type === 'object') responses++;
});
const ms = performance.now() - t0;
const cpu = process.cpuUsage();
process.stdout.write(`${JSON.stringify({ tool: '@memlab/heap-analysis', ms, cpuMs: (cpu.user + cpu.system) / 1000, maxRssKB: process.resourceUsage().maxRSS, nodes: heap.nodes.length, responses })}\n`);
