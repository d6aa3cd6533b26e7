import { getHeapStatistics } from 'node:v8';
import { invalidOption } from '../../errors.js';

/** Load shedding: refuse new streams (503) before the process falls over. */
export interface ShedOptions {
  /** Streams open at once through this sse()/hub options object. */
  maxStreams?: number;
  /** Refuse while V8's used heap is above this many bytes. */
  maxHeapBytes?: number;
  /** Refuse while used heap / heap size limit is above this ratio (0..1). */
  maxHeapRatio?: number;
  /** Retry-After on a 503, seconds (default 5). */
  retryAfterSeconds?: number;
}

const HEAP_SAMPLE_MS = 250;
let heapAt = -Infinity;
let heapUsed = 0;
let heapLimit = 1;

/** V8's used heap, sampled at most every 250 ms so the check is cheap on a busy accept path. */
export function heapNow(): { used: number; limit: number } {
  const now = performance.now();
  if (now - heapAt >= HEAP_SAMPLE_MS) {
    const h = getHeapStatistics();
    heapUsed = h.used_heap_size;
    heapLimit = h.heap_size_limit;
    heapAt = now;
  }
  return { used: heapUsed, limit: heapLimit };
}

export class Shedder {
  readonly maxStreams: number;
  readonly maxHeapBytes: number;
  readonly maxHeapRatio: number;
  readonly retryAfterSeconds: number;
  /** Streams open now through the options object that owns this shedder. */
  active = 0;

  constructor(options: ShedOptions) {
    if (options === null || typeof options !== 'object') throw invalidOption('shed', 'an object', options);
    const pos = (name: string, v: unknown, dflt: number): number => {
      if (v === undefined) return dflt;
      if (typeof v !== 'number' || !(v > 0)) throw invalidOption('shed.' + name, 'a positive number', v);
      return v;
    };
    this.maxStreams = pos('maxStreams', options.maxStreams, Infinity);
    this.maxHeapBytes = pos('maxHeapBytes', options.maxHeapBytes, Infinity);
    this.maxHeapRatio = pos('maxHeapRatio', options.maxHeapRatio, Infinity);
    this.retryAfterSeconds = Math.ceil(pos('retryAfterSeconds', options.retryAfterSeconds, 5));
  }

  /** True when a new stream should be refused now. */
  overloaded(): boolean {
    if (this.active >= this.maxStreams) return true;
    if (this.maxHeapBytes === Infinity && this.maxHeapRatio === Infinity) return false;
    const h = heapNow();
    return h.used > this.maxHeapBytes || h.used / h.limit > this.maxHeapRatio;
  }
}
