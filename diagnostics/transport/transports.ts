import type fs from 'node:fs';
import { DEFAULT_TRACE_CATEGORIES, processFactsExpression, streamsExpression } from '../../src/consumers/agent/protocol.js';
import { DiagError } from '../errors.js';
import { AgentClient } from './agent-client.js';
import { InspectorSession } from './inspector-client.js';

/** What `capture` needs from a transport; the agent and the inspector each implement it. */
export interface Transport {
  readonly kind: 'agent' | 'inspector';
  readonly description: string;
  info(): Promise<{ pid: number; nodeVersion: string; streamscopeVersion: string | null; argv: string[] }>;
  /** Stream snapshots and findings; null when streamscope is not loaded in the target. */
  streams(): Promise<Record<string, unknown> | null>;
  processFacts(sampleMs: number): Promise<Record<string, unknown>>;
  /** Streams the snapshot into `out`; resolves with the bytes written. */
  heap(out: fs.WriteStream, onBytes: (n: number) => void): Promise<number>;
  /** Writes trace events (Chrome trace-event format) into `out`; resolves with the event count. */
  trace(seconds: number, out: fs.WriteStream): Promise<number>;
  cpu(seconds: number): Promise<CpuAnswer>;
  /** A CPU profile that can run while `trace` does (the same window, for long-task attribution). */
  cpuAlongside(seconds: number): Promise<CpuAnswer>;
  /** A sampled heap profile (V8's sampling heap profiler) over `seconds`, or since start-up when the agent samples always. */
  heapProfile(seconds: number, intervalBytes?: number): Promise<HeapProfileAnswer>;
  /** Which light profilers the target has (the agent's hello; the inspector has none of its own). */
  profiling(): Promise<{ pprof: boolean; heapSampling: number | null; cpuContinuous: boolean; cpuEager?: boolean }>;
  close(): Promise<void>;
}

export interface CpuAnswer {
  profile: unknown;
  /** Which profiler answered (agent): 'pprof' (continuous), 'eager' (eager-logging profiler), 'inspector'. */
  engine?: string;
  /** How long the target's start and stop calls took, in ms (agent, when it timed them). */
  stallMs?: number;
}

export interface HeapProfileAnswer {
  profile: unknown;
  engine: 'pprof' | 'inspector';
  since: 'window' | 'start';
  intervalBytes: number;
  /** What the target's event loop spent in the calls that stop it (agent only), ms. */
  stallMs?: number;
  /** Where streamscope's own code lives in the target (agent only). */
  libraryPaths?: string[];
}

/** Mean bytes between heap samples for a window capture (V8's default: 32 KiB). */
export const HEAP_PROFILE_INTERVAL = 128 * 1024;

function writeSink(out: fs.WriteStream, pause: () => void, resume: () => void): (chunk: string | Buffer) => boolean {
  return (chunk) => {
    const ok = out.write(chunk);
    if (!ok) {
      pause();
      out.once('drain', resume);
    }
    return ok;
  };
}

/** Writes `{"traceEvents":[...]}` incrementally. */
function traceWriter(out: fs.WriteStream): { add(events: unknown[]): void; end(): void } {
  let first = true;
  out.write('{"traceEvents":[\n');
  return {
    add(events) {
      for (const e of events) {
        out.write((first ? '' : ',\n') + JSON.stringify(e));
        first = false;
      }
    },
    end() {
      out.write('\n]}\n');
    },
  };
}

export class AgentTransport implements Transport {
  readonly kind = 'agent';
  constructor(private readonly client: AgentClient) {}
  get description(): string {
    return `agent socket ${this.client.path}`;
  }
  async info() {
    const h = await this.client.hello();
    return { pid: h.pid, nodeVersion: h.nodeVersion, streamscopeVersion: h.streamscopeVersion, argv: h.argv };
  }
  streams() {
    return this.client.request<Record<string, unknown>>('streams');
  }
  processFacts(sampleMs: number) {
    return this.client.request<Record<string, unknown>>('process', { sampleMs });
  }
  async heap(out: fs.WriteStream, onBytes: (n: number) => void): Promise<number> {
    let n = 0;
    const sink = writeSink(out, () => undefined, () => this.client.resume());
    try {
      await this.client.heap((chunk) => {
        n += chunk.length;
        onBytes(n);
        return sink(chunk);
      });
    } finally {
      // a stream being ended emits no 'drain': never leave the socket paused
      this.client.resume();
    }
    return n;
  }
  async trace(seconds: number, out: fs.WriteStream): Promise<number> {
    const w = traceWriter(out);
    const r = await this.client.request<{ events: number }>('trace', { seconds, categories: DEFAULT_TRACE_CATEGORIES }, (event, data) => {
      if (event === 'trace' && Array.isArray(data)) w.add(data);
    });
    w.end();
    return r.events;
  }
  async cpu(seconds: number): Promise<CpuAnswer> {
    return this.client.request<CpuAnswer>('cpu', { seconds });
  }
  async cpuAlongside(seconds: number): Promise<CpuAnswer> {
    // one request at a time per connection: the profile goes over a second one
    const second = await AgentClient.connect(this.client.path);
    try {
      return await second.request<CpuAnswer>('cpu', { seconds });
    } finally {
      second.close();
    }
  }
  async heapProfile(seconds: number, intervalBytes?: number): Promise<HeapProfileAnswer> {
    return this.client.request<HeapProfileAnswer>('heapProfile', intervalBytes === undefined ? { seconds } : { seconds, intervalBytes });
  }
  async profiling() {
    const h = await this.client.hello();
    return h.profiling ?? { pprof: false, heapSampling: null, cpuContinuous: false };
  }
  async close(): Promise<void> {
    this.client.close();
  }
}

export class InspectorTransport implements Transport {
  readonly kind = 'inspector';
  constructor(private readonly s: InspectorSession) {}
  get description(): string {
    return `inspector on 127.0.0.1:${this.s.port}${this.s.wasOpen ? ' (already open; left open)' : ' (opened with SIGUSR1; closed when done)'}`;
  }
  async info() {
    const v = await this.s.evaluateJson('(() => { try { return JSON.stringify({ pid: process.pid, nodeVersion: process.version, argv: process.argv }); } catch { return "{}"; } })()');
    return { pid: Number(v.pid), nodeVersion: String(v.nodeVersion ?? ''), streamscopeVersion: null, argv: Array.isArray(v.argv) ? (v.argv as string[]) : [] };
  }
  async streams() {
    const v = await this.s.evaluateJson(streamsExpression());
    if (v.loaded !== true) return null;
    if (typeof v.error === 'string') throw new DiagError(`reading streams in the target failed: ${v.error}`);
    delete v.loaded;
    return v;
  }
  async processFacts(sampleMs: number) {
    const v = await this.s.evaluateJson(processFactsExpression(sampleMs), true);
    if (typeof v.error === 'string') throw new DiagError(`reading process facts in the target failed: ${v.error}`);
    return v;
  }
  async heap(out: fs.WriteStream, onBytes: (n: number) => void): Promise<number> {
    let n = 0;
    const sink = writeSink(out, () => this.s.pause(), () => this.s.resume());
    this.s.on('HeapProfiler.addHeapSnapshotChunk', (p) => {
      const chunk = String(p.chunk ?? '');
      n += Buffer.byteLength(chunk);
      onBytes(n);
      sink(chunk);
    });
    try {
      await this.s.send('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    } finally {
      // a stream being ended emits no 'drain': never leave the WebSocket paused (the target's
      // inspector.close() would wait forever for this session to go)
      this.s.resume();
    }
    return n;
  }
  async trace(seconds: number, out: fs.WriteStream): Promise<number> {
    const w = traceWriter(out);
    let count = 0;
    let lastBatch = 0;
    this.s.on('NodeTracing.dataCollected', (p) => {
      const v = Array.isArray(p.value) ? (p.value as unknown[]) : [];
      count += v.length;
      lastBatch = Date.now();
      w.add(v);
    });
    const complete = new Promise<void>((resolve) => this.s.on('NodeTracing.tracingComplete', () => resolve()));
    await this.s.send('NodeTracing.start', { traceConfig: { includedCategories: DEFAULT_TRACE_CATEGORIES, recordMode: 'recordContinuously' } });
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const stopAt = Date.now();
    await this.s.send('NodeTracing.stop');
    await complete;
    // Over the WebSocket, tracingComplete can overtake the last dataCollected batches: wait for a quiet spell.
    const settled = (): boolean => lastBatch >= stopAt && Date.now() - lastBatch >= 400;
    while (!settled() && Date.now() - stopAt < 5000) await new Promise((r) => setTimeout(r, 100));
    w.end();
    return count;
  }
  async cpu(seconds: number): Promise<CpuAnswer> {
    await this.s.send('Profiler.enable');
    await this.s.send('Profiler.start');
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const { profile } = await this.s.send('Profiler.stop');
    await this.s.send('Profiler.disable').catch(() => undefined);
    return { profile, engine: 'inspector' };
  }
  async cpuAlongside(seconds: number): Promise<CpuAnswer> {
    // the same session: Profiler and NodeTracing run side by side
    return this.cpu(seconds);
  }
  async heapProfile(seconds: number, intervalBytes?: number): Promise<HeapProfileAnswer> {
    const interval = intervalBytes ?? HEAP_PROFILE_INTERVAL;
    await this.s.send('HeapProfiler.enable');
    await this.s.send('HeapProfiler.startSampling', { samplingInterval: interval });
    await new Promise((r) => setTimeout(r, seconds * 1000));
    // stopSampling answers the profile and stops, in one call
    const { profile } = await this.s.send('HeapProfiler.stopSampling');
    await this.s.send('HeapProfiler.disable').catch(() => undefined);
    return { profile, engine: 'inspector', since: 'window', intervalBytes: interval };
  }
  async profiling() {
    return { pprof: false, heapSampling: null, cpuContinuous: false };
  }
  async close(): Promise<void> {
    const refused = await this.s.close();
    if (!refused) process.stderr.write(`diag: warning: the inspector of pid ${this.s.pid} still accepts connections on 127.0.0.1:${this.s.port}\n`);
    else if (this.s.openedAt !== null) {
      // the window in which any local user could attach (docs/security.md): SIGUSR1 to the port refusing again
      process.stderr.write(`diag: the inspector of pid ${this.s.pid} was open for ${((Date.now() - this.s.openedAt) / 1000).toFixed(1)} s\n`);
    }
  }
}
