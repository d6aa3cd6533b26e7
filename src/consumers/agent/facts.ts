import fs from 'node:fs';
import v8 from 'node:v8';
import perf_hooks from 'node:perf_hooks';
import { targetCgroupMemory, targetHostMemAvailable, targetProcessFacts, type ProcessFacts } from './protocol.js';

/**
 * The agent's `process` answer. The code lives in the protocol module (src/consumers/agent/protocol.ts) because
 * `diag --via inspector` evaluates the very same function in the target: the two answers cannot drift.
 */
export type { CgroupMemory, ProcessFacts } from './protocol.js';
export { cgroupMemory, hostMemAvailable } from './protocol.js';

export function processFacts(sampleMs: number): Promise<ProcessFacts> {
  return targetProcessFacts({ fs, v8, perf_hooks }, sampleMs, targetCgroupMemory, targetHostMemAvailable);
}
