import fs from 'node:fs';
import v8 from 'node:v8';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

export interface CgroupMemory {
  /** Bytes, or null when unlimited. */
  limit: number | null;
  usage: number | null;
  source: string;
}

/** Reads this process's cgroup memory limit and usage (v2, then v1); null when not readable. */
export function cgroupMemory(pid: number | 'self' = 'self'): CgroupMemory | null {
  try {
    const lines = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    for (const line of lines) {
      const [, controllers, rel] = line.split(':');
      if (rel === undefined) continue;
      if (controllers === '') {
        const base = `/sys/fs/cgroup${rel === '/' ? '' : rel}`;
        const max = readText(`${base}/memory.max`);
        if (max === null) continue;
        return { limit: max === 'max' ? null : Number(max), usage: numberOrNull(readText(`${base}/memory.current`)), source: base };
      }
      if (controllers?.split(',').includes('memory')) {
        const base = `/sys/fs/cgroup/memory${rel === '/' ? '' : rel}`;
        const max = numberOrNull(readText(`${base}/memory.limit_in_bytes`));
        if (max === null) continue;
        // v1 reports "unlimited" as a huge page-aligned number
        return { limit: max >= 2 ** 60 ? null : max, usage: numberOrNull(readText(`${base}/memory.usage_in_bytes`)), source: base };
      }
    }
  } catch {
    /* not Linux, or not readable */
  }
  return null;
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function numberOrNull(s: string | null): number | null {
  if (s === null) return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : null;
}

/** Host memory available (Linux `MemAvailable`), bytes; null when unknown. */
export function hostMemAvailable(): number | null {
  const text = readText('/proc/meminfo');
  const m = text?.match(/^MemAvailable:\s+(\d+)\s+kB/m);
  return m ? Number(m[1]) * 1024 : null;
}

export interface ProcessFacts {
  pid: number;
  nodeVersion: string;
  platform: string;
  uptimeSec: number;
  memoryUsage: NodeJS.MemoryUsage;
  resourceUsage: NodeJS.ResourceUsage;
  activeResources: Record<string, number>;
  heapStatistics: v8.HeapInfo;
  heapSpaces: v8.HeapSpaceInfo[];
  eventLoopDelay: { sampleMs: number; minMs: number; maxMs: number; meanMs: number; stddevMs: number; p50Ms: number; p99Ms: number };
  eventLoopUtilization: { sinceStart: number; sample: number };
  cgroupMemory: CgroupMemory | null;
  hostMemAvailable: number | null;
}

function counts(list: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of list) out[k] = (out[k] ?? 0) + 1;
  return out;
}

const ms = (ns: number): number => Math.round(ns / 1e4) / 100;

/**
 * Process facts, with the event-loop delay and utilization sampled over `sampleMs` (the histogram is on
 * only while asked, so the agent costs nothing between captures). The timer is unref'd.
 */
export function processFacts(sampleMs: number): Promise<ProcessFacts> {
  const h = monitorEventLoopDelay({ resolution: 10 });
  const elu0 = performance.eventLoopUtilization();
  h.enable();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      h.disable();
      const elu = performance.eventLoopUtilization(elu0);
      const active = typeof process.getActiveResourcesInfo === 'function' ? process.getActiveResourcesInfo() : [];
      resolve({
        pid: process.pid,
        nodeVersion: process.version,
        platform: process.platform,
        uptimeSec: Math.round(process.uptime()),
        memoryUsage: process.memoryUsage(),
        resourceUsage: process.resourceUsage(),
        activeResources: counts(active),
        heapStatistics: v8.getHeapStatistics(),
        heapSpaces: v8.getHeapSpaceStatistics(),
        eventLoopDelay: {
          sampleMs,
          minMs: h.count > 0 ? ms(h.min) : 0,
          maxMs: h.count > 0 ? ms(h.max) : 0,
          meanMs: h.count > 0 ? ms(h.mean) : 0,
          stddevMs: h.count > 0 ? ms(h.stddev) : 0,
          p50Ms: h.count > 0 ? ms(h.percentile(50)) : 0,
          p99Ms: h.count > 0 ? ms(h.percentile(99)) : 0,
        },
        eventLoopUtilization: {
          sinceStart: performance.eventLoopUtilization().utilization,
          sample: elu.utilization,
        },
        cgroupMemory: cgroupMemory(),
        hostMemAvailable: hostMemAvailable(),
      });
    }, sampleMs);
    t.unref();
  });
}
