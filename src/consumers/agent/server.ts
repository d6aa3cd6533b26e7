import cluster from 'node:cluster';
import net from 'node:net';
import { getTracker } from '../../core/tracker.js';
import { BlockingFdWriter, cpuProfile, heapSnapshot, trace, wait as waitFor } from './inspect.js';
import { processFacts } from './facts.js';
import { continuousCpuProfile, heapProfile, parseInterval, profilingState } from './profiles.js';
import { eagerCpuProfile } from './eager-cpu.js';
import { DEFAULT_TRACE_CATEGORIES, MAX_RECORD_SECONDS, PROTOCOL_VERSION, sampleWindow, targetStreams, type AgentErrorCode, type HelloResult, type Request } from './protocol.js';
import { VERSION } from './version.js';

/**
 * Per-connection bounds (docs/security.md, "Agent socket"): a connection that exceeds one is dropped and
 * counted in `streamscope_internal_errors_total{component="agent"}`, so a same-user client that floods the
 * socket costs the app a few MB at most, never its memory.
 */
/** Longest request line (diag's are < 200 bytes). */
export const MAX_LINE = 64 * 1024;
/** Requests waiting on one connection (they run one at a time; diag sends one and waits). */
export const MAX_QUEUED_REQUESTS = 16;
/** Malformed request lines answered before the connection is dropped (diag never sends one). */
export const MAX_MALFORMED_LINES = 16;
/** Answer bytes the client has not read yet; past this, the client is not reading and is dropped. */
export const MAX_UNSENT_BYTES = 8 * 1024 * 1024;
/**
 * A trace is one answer in batches that V8 hands over all at once when tracing stops: its size is the
 * trace's (bounded by MAX_RECORD_SECONDS of events), so it gets a larger bound than ordinary answers.
 */
export const MAX_UNSENT_TRACE_BYTES = 256 * 1024 * 1024;
const tracker = getTracker();

function drop(sock: net.Socket, reason: string): void {
  if (sock.destroyed) return;
  tracker.fault('agent', new Error(`agent connection dropped: ${reason}`));
  sock.destroy();
}

class RequestError extends Error {
  constructor(
    readonly code: AgentErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** One recording of each kind at a time, process-wide (V8 has one profiler and one tracing agent). */
const busy = new Set<string>();

function exclusive<T>(kind: string, fn: () => Promise<T>): Promise<T> {
  if (busy.has(kind)) return Promise.reject(new RequestError('EBUSY', `another ${kind} capture is running in this process`));
  busy.add(kind);
  return fn().finally(() => busy.delete(kind));
}

function seconds(req: Request): number {
  const s = req.seconds;
  if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0 || s > MAX_RECORD_SECONDS) {
    throw new RequestError('EINVAL', `seconds must be a number in (0, ${MAX_RECORD_SECONDS}]`);
  }
  return s;
}

export function hello(): HelloResult {
  return {
    protocol: PROTOCOL_VERSION,
    pid: process.pid,
    nodeVersion: process.version,
    argv: process.argv.slice(),
    execArgv: process.execArgv.slice(),
    title: process.title,
    streamscopeVersion: VERSION,
    openStreams: tracker.open.size,
    uptimeSec: Math.round(process.uptime()),
    profiling: profilingState(),
    ppid: process.ppid,
    clusterWorkerId: cluster.isWorker && cluster.worker !== undefined ? cluster.worker.id : null,
  };
}

/** Serves one `diag` connection: requests run one at a time, in order. */
export function serveConnection(sock: net.Socket): void {
  sock.unref();
  sock.setEncoding('utf8');
  const aborter = new AbortController();
  const queue: Request[] = [];
  let pending = '';
  let running = false;
  let malformed = 0;

  sock.on('error', () => undefined);
  sock.on('close', () => aborter.abort());
  sock.on('data', (text: string) => {
    if (sock.destroyed) return;
    pending += text;
    let start = 0;
    let nl: number;
    while ((nl = pending.indexOf('\n', start)) >= 0) {
      const line = pending.slice(start, nl);
      start = nl + 1;
      if (line.length > MAX_LINE) return drop(sock, `request line longer than ${MAX_LINE} bytes`);
      if (line.trim() === '') continue;
      let req: Request;
      try {
        req = JSON.parse(line) as Request;
        if (typeof req !== 'object' || req === null || typeof req.id !== 'number') throw new Error('no id');
      } catch {
        if (++malformed > MAX_MALFORMED_LINES) return drop(sock, `more than ${MAX_MALFORMED_LINES} malformed request lines`);
        send(sock, { id: null, ok: false, error: { code: 'EPROTO', message: 'malformed request line' } });
        if (sock.destroyed) return;
        continue;
      }
      if (queue.length >= MAX_QUEUED_REQUESTS) return drop(sock, `more than ${MAX_QUEUED_REQUESTS} requests waiting`);
      queue.push(req);
    }
    pending = pending.slice(start);
    if (pending.length > MAX_LINE) return drop(sock, `request line longer than ${MAX_LINE} bytes`);
    void pump();
  });

  async function pump(): Promise<void> {
    if (running) return;
    running = true;
    while (queue.length > 0 && !sock.destroyed) {
      const req = queue.shift() as Request;
      // a trace's final answer follows its batches, which may still be queued: the same bound applies
      const limit = req.op === 'trace' ? MAX_UNSENT_TRACE_BYTES : MAX_UNSENT_BYTES;
      try {
        const result = await handle(sock, req, aborter.signal);
        send(sock, { id: req.id, ok: true, result }, limit);
      } catch (err) {
        if (!(err instanceof RequestError)) tracker.fault('agent', err);
        const code = err instanceof RequestError ? err.code : 'EFAILED';
        send(sock, { id: req.id, ok: false, error: { code, message: String((err as Error)?.message ?? err) } }, limit);
      }
    }
    running = false;
  }
}

function send(sock: net.Socket, msg: object, limit = MAX_UNSENT_BYTES): void {
  if (sock.destroyed || !sock.writable) return;
  // one answer may be large (a streams list); answers piling up unread are a client that does not read
  if (sock.writableLength > limit) return drop(sock, `more than ${limit} answer bytes unread`);
  sock.write(JSON.stringify(msg) + '\n');
}

async function handle(sock: net.Socket, req: Request, signal: AbortSignal): Promise<unknown> {
  switch (req.op) {
    case 'hello':
      return hello();
    case 'streams':
      // the same function the inspector evaluates (src/consumers/agent/protocol.ts); the tracker is the process-wide one
      return targetStreams() ?? { pid: process.pid, time: new Date().toISOString(), streams: [], findings: [], internalErrors: {} };
    case 'process': {
      return processFacts(sampleWindow(req.sampleMs));
    }
    case 'heap':
      return exclusive('heap', () => sendHeap(sock, req));
    case 'trace': {
      const s = seconds(req);
      const cats = Array.isArray(req.categories) && req.categories.every((c) => typeof c === 'string') ? req.categories : DEFAULT_TRACE_CATEGORIES;
      return exclusive('trace', async () => {
        const events = await trace(s, cats, signal, (batch) => send(sock, { id: req.id, event: 'trace', data: batch }, MAX_UNSENT_TRACE_BYTES));
        return { events };
      });
    }
    case 'cpu': {
      const s = seconds(req);
      return exclusive('cpu', async () => {
        const cont = await continuousCpuProfile(s, (ms) => waitFor(ms, signal));
        if (cont !== null) return { profile: cont.profile, engine: 'pprof', stallMs: cont.stallMs };
        const eager = await eagerCpuProfile(s, (ms) => waitFor(ms, signal));
        if (eager !== null) return { profile: eager.profile, engine: 'eager', stallMs: eager.stallMs };
        return { profile: await cpuProfile(s, signal), engine: 'inspector' };
      });
    }
    case 'heapProfile': {
      const s = seconds(req);
      const interval = req.intervalBytes === undefined ? undefined : parseInterval(req.intervalBytes);
      if (interval === null) throw new RequestError('EINVAL', 'intervalBytes must be an integer in [1024, 67108864]');
      return exclusive('heapProfile', () => heapProfile(s, interval, (ms) => waitFor(ms, signal)));
    }
    default:
      throw new RequestError('EINVAL', `unknown op ${JSON.stringify((req as { op?: unknown }).op)}`);
  }
}


function frame(chunk: string): Buffer {
  const len = Buffer.byteLength(chunk);
  const buf = Buffer.allocUnsafe(4 + len);
  buf.writeUInt32BE(len, 0);
  buf.write(chunk, 4);
  return buf;
}

/**
 * Streams a heap snapshot as frames. Once the header line has been flushed, the frames go straight to the
 * socket's descriptor while V8 serializes (see BlockingFdWriter); without a descriptor (not a Unix
 * platform), they go through the socket's own queue.
 */
interface HeapResult {
  bytes: number;
  /** 'direct': frames went straight to the socket, one chunk in memory at a time; 'queued': through the socket's queue. */
  mode: 'direct' | 'queued';
  /** Times the agent waited for a slow reader ('direct' only). */
  waits: number;
}

async function sendHeap(sock: net.Socket, req: Request): Promise<HeapResult> {
  await new Promise<void>((resolve, reject) => {
    sock.write(JSON.stringify({ id: req.id, binary: true }) + '\n', (err) => (err ? reject(err) : resolve()));
  });
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  let bytes = 0;
  if (typeof fd === 'number' && fd >= 0 && sock.writableLength === 0) {
    const w = new BlockingFdWriter(fd);
    await heapSnapshot((chunk) => {
      const buf = frame(chunk);
      bytes += buf.length - 4;
      w.write(buf);
    });
    w.write(Buffer.alloc(4));
    if (w.failed !== null) {
      sock.destroy();
      throw new RequestError('EFAILED', `heap snapshot transfer aborted: ${w.failed}`);
    }
    return { bytes, mode: 'direct', waits: w.waits };
  } else {
    await heapSnapshot((chunk) => {
      const buf = frame(chunk);
      bytes += buf.length - 4;
      sock.write(buf);
    });
    sock.write(Buffer.alloc(4));
  }
  return { bytes, mode: 'queued', waits: 0 };
}
