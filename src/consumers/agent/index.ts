import fs from 'node:fs';
import net from 'node:net';
import { isMainThread } from 'node:worker_threads';
import { kAgent } from '../../core/symbols.js';
import { getTracker } from '../../core/tracker.js';
import { agentDir, ensurePrivateDir, removeStaleSockets, socketPath } from './paths.js';
import { serveConnection } from './server.js';
import { warn } from '../../errors.js';
import { parseInterval, preloadPprof, startContinuousCpu, startContinuousHeap, startOomProfile, stopProfilers } from './profiles.js';
import { atShutdown } from '../../core/switch.js';
import { startEagerCpu } from './eager-cpu.js';

export interface AgentOptions {
  /** Directory for the socket; default `STREAMSCOPE_AGENT_DIR`, `$XDG_RUNTIME_DIR/streamscope` or `<tmpdir>/streamscope-<uid>`. */
  dir?: string;
  /**
   * Keep V8's sampling heap profiler running from now on, one sample per this many allocated bytes on average
   * (1024 .. 64 MiB; 524288 is pprof's default), so that `diag capture --heap-profile` shows in-use memory since
   * start-up. Default `STREAMSCOPE_HEAP_SAMPLING`; off when neither is set.
   */
  heapSampling?: number;
  /**
   * Start the continuous CPU profiler (optional dependency `@datadog/pprof`) now, while the heap is small, so
   * that `diag capture --cpu` later costs milliseconds instead of a heap walk. Default
   * `STREAMSCOPE_CPU_PROFILER=on`.
   */
  cpuProfiler?: boolean;
  /**
   * Create the eager-logging CPU profiler (optional dependency `@sentry-internal/node-cpu-profiler`) now, while
   * the heap is small (it walks the heap once, about 1.5 ms per MB of used heap; not done above 32 MB), so that
   * `diag capture --cpu` needs no walk later (samples at 99 Hz). Default: on when the package is installed and
   * the continuous profiler is not asked for; `false` or `STREAMSCOPE_CPU_EAGER=off` turns it off.
   */
  cpuEager?: boolean;
  /**
   * Write a heap profile into this directory (created 0700; files 0600) when the heap nears its limit, before an
   * out-of-memory crash (optional dependency `@datadog/pprof`; keeps heap sampling on, at `heapSampling` or
   * 512 KiB). Default `STREAMSCOPE_OOM_PROFILE`; off when neither is set.
   */
  oomProfile?: string;
}

export interface Agent {
  /** The socket path, or null when the agent is not running. */
  readonly path: string | null;
  /** Why the agent is not running, when it is not. */
  readonly error: string | null;
  /** Resolves once the socket listens (or failed to). */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

const tracker = getTracker();
const g = globalThis as unknown as Record<symbol, Agent | undefined>;

/**
 * Starts the in-process end of `diag`: a Unix socket only the process owner can reach (directory 0700,
 * socket 0600). Idempotent across calls and copies of the package. Never throws and never keeps the app
 * alive; `STREAMSCOPE_AGENT=off` turns it off.
 */
export function startAgent(options: AgentOptions = {}): Agent {
  const existing = g[kAgent];
  if (existing !== undefined) return existing;
  let agent: Agent;
  try {
    agent = create(options);
  } catch (err) {
    tracker.fault('agent', err);
    agent = disabled(`agent failed to start: ${(err as Error)?.message ?? String(err)}`);
    warn('STREAMSCOPE_ERR_AGENT', `streamscope: ${agent.error}`);
  }
  g[kAgent] = agent;
  return agent;
}

/** shutdown(): the agent closes (its socket file removed) and its always-on profilers stop; startAgent() starts anew. */
function stopAgent(): Promise<unknown> {
  const agent = g[kAgent];
  g[kAgent] = undefined;
  return Promise.all([agent?.close(), stopProfilers()]);
}
atShutdown(stopAgent, 30);

function startProfilers(options: AgentOptions): void {
  preloadPprof();
  const envSampling = process.env.STREAMSCOPE_HEAP_SAMPLING;
  const raw = options.heapSampling ?? envSampling;
  let interval: number | null = null;
  if (raw !== undefined && raw !== '' && raw !== '0' && raw !== 'off') {
    interval = parseInterval(raw);
    if (interval === null) process.stderr.write(`streamscope: heap sampling interval must be bytes in [1024, 67108864], got "${String(raw)}"; not sampling\n`);
  }
  const oom = options.oomProfile ?? process.env.STREAMSCOPE_OOM_PROFILE;
  // one after the other: both start the same heap profiler
  void (async () => {
    if (interval !== null) await startContinuousHeap(interval);
    if (oom !== undefined && oom !== '' && oom !== 'off') await startOomProfile(oom, interval);
  })();
  const cpu = options.cpuProfiler ?? envSwitch('STREAMSCOPE_CPU_PROFILER') === true;
  if (cpu) void startContinuousCpu();
  else {
    // now, not on a later tick: creating it walks the heap, which is smallest now
    const env = envSwitch('STREAMSCOPE_CPU_EAGER');
    const eager = options.cpuEager ?? env !== false;
    if (eager) startEagerCpu(options.cpuEager === true || env === true);
  }
}

/** An on/off environment variable: true for on/1/true, false for off/0/false, undefined otherwise (unset included). */
function envSwitch(name: string): boolean | undefined {
  const v = (process.env[name] ?? '').toLowerCase();
  if (v === 'on' || v === '1' || v === 'true') return true;
  if (v === 'off' || v === '0' || v === 'false') return false;
  return undefined;
}

function disabled(reason: string): Agent {
  return { path: null, error: reason, ready: Promise.resolve(), close: () => Promise.resolve() };
}

function create(options: AgentOptions): Agent {
  const off = (process.env.STREAMSCOPE_AGENT ?? '').toLowerCase();
  if (off === 'off' || off === '0' || off === 'false') return disabled('STREAMSCOPE_AGENT is off');
  if (!isMainThread) return disabled('the agent runs on the main thread only');
  if (process.platform === 'win32') return disabled('the agent needs Unix sockets');

  const dir = options.dir ?? agentDir();
  ensurePrivateDir(dir);
  // sockets left by processes ended by a signal (no handler here: that would change how the app exits)
  removeStaleSockets(dir);
  const file = socketPath(dir, process.pid);
  // A socket file with our pid is left over by an earlier process (pids are reused) or an earlier agent.
  try {
    fs.unlinkSync(file);
  } catch {
    /* none */
  }

  // the connections of `diag` clients, ended by close() (server.close() alone would wait for them)
  const connections = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: false }, (sock) => {
    connections.add(sock);
    sock.once('close', () => connections.delete(sock));
    try {
      serveConnection(sock);
    } catch (err) {
      tracker.fault('agent', err);
      sock.destroy();
    }
  });
  let listening = false;
  let error: string | null = null;
  const removeSocket = (): void => {
    if (!listening) return;
    listening = false;
    try {
      fs.unlinkSync(file);
    } catch {
      /* gone */
    }
  };
  const ready = new Promise<void>((resolve) => {
    server.once('listening', () => {
      listening = true;
      try {
        fs.chmodSync(file, 0o600);
      } catch (err) {
        tracker.fault('agent', err);
      }
      resolve();
    });
    server.once('error', (err) => {
      error = `agent could not listen on ${file}: ${err.message}`;
      tracker.fault('agent', err);
      warn('STREAMSCOPE_ERR_AGENT', `streamscope: ${error}`);
      resolve();
    });
  });
  server.on('error', () => undefined);
  // The socket must be 0600 from its first moment: the directory is 0700, and the umask covers the rest.
  const oldMask = process.umask(0o177);
  try {
    server.listen({ path: file, exclusive: true });
  } finally {
    process.umask(oldMask);
  }
  server.unref();
  process.on('exit', removeSocket);
  startProfilers(options);

  const agent: Agent = {
    get path() {
      return error === null ? file : null;
    },
    get error() {
      return error;
    },
    ready,
    close() {
      process.removeListener('exit', removeSocket);
      if (g[kAgent] === agent) g[kAgent] = undefined;
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const sock of connections) sock.destroy();
        removeSocket();
      });
    },
  };
  return agent;
}
