/**
 * `diag capture <pid> [--out DIR] [--heap] [--heap-profile SECONDS] [--trace SECONDS] [--cpu SECONDS] [--via agent|inspector] [--max-pause SECONDS] [--force]`
 *
 * Cheap parts first (streams, process facts), each written as soon as it is taken, so a refused or failed
 * heap step loses nothing. The target keeps serving throughout; the inspector is closed again when diag
 * opened it. Resolves to the exit code; DiagErrors become one line and exit 2 in cli.ts.
 */
import { DiagError, errorLine } from '../errors.js';
import { createProgress, formatBytes } from '../progress.js';
import { AgentClient, findAgentSocket } from '../transport/agent-client.js';
import { CaptureDir, defaultCaptureDir } from '../transport/capture-dir.js';
import { InspectorSession } from '../transport/inspector-client.js';
import { inspectTarget, memoryHeadroom, parsePid, type Target } from '../transport/procfs.js';
import { AgentTransport, InspectorTransport, type CpuAnswer, type Transport } from '../transport/transports.js';
import { cpuPauseNote, DEFAULT_MAX_PAUSE_S, heapProfileNote, pauseRefusal, parseMaxPause, TRACE_PAUSE_NOTE, writePprof } from './light-capture.js';

export interface CaptureOptions {
  out?: string;
  heap?: boolean;
  trace?: number;
  cpu?: number;
  via?: 'agent' | 'inspector';
  force?: boolean;
  /** Sampled heap profile window (seconds). */
  heapProfile?: number;
  /** Longest estimated snapshot pause to accept without --force (seconds; default 2). */
  maxPause?: number;
  /** Event-loop delay sampling window for process.json (ms). */
  sampleMs?: number;
}

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream | NodeJS.WritableStream;
}

/**
 * Measured here (docs/benchmarks.md, "Capture pause"): a 200 MB heap of small objects paused the target for
 * 13 s on an idle machine and 30-37 s on a loaded one (15 and 6 MB of used heap per second), and raised its
 * peak RSS by about 7x the used heap while V8 built the snapshot. The refusal threshold stays the contract's
 * 2x; below 7x diag warns.
 */
const HEAP_BYTES_PER_SECOND_FAST = 15 * 1024 * 1024;
const HEAP_BYTES_PER_SECOND_SLOW = 6 * 1024 * 1024;
const PEAK_MEMORY_FACTOR = 7;
export { DEFAULT_MAX_PAUSE_S };

export function seconds(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 600) throw new DiagError(`${name} must be a number of seconds in (0, 600], got "${String(v)}"`);
  return n;
}

export async function connect(target: Target, via: CaptureOptions['via'], note: (line: string) => void): Promise<Transport> {
  if (via !== undefined && via !== 'agent' && via !== 'inspector') throw new DiagError(`--via must be "agent" or "inspector", got "${String(via)}"`);
  if (via !== 'inspector') {
    const sock = findAgentSocket(target.pid);
    if (sock !== null) {
      try {
        const client = await AgentClient.connect(sock);
        const t = new AgentTransport(client);
        await t.info();
        return t;
      } catch (err) {
        if (via === 'agent') throw err;
        note(`agent of pid ${target.pid} did not answer (${errorLine(err)}); using the inspector`);
      }
    } else if (via === 'agent') {
      throw new DiagError(`pid ${target.pid} runs no streamscope agent (start it with --import streamscope/register or startAgent()); try --via inspector`);
    }
  } else if (findAgentSocket(target.pid) !== null) {
    note(`pid ${target.pid} runs the agent; --via inspector opens its inspector anyway (leave out --via to use the agent)`);
  }
  return new InspectorTransport(await InspectorSession.open(target, undefined, note));
}

export async function runCapture(pidText: string, opts: CaptureOptions, io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const note = (line: string): void => void io.stderr.write(`diag: ${line}\n`);
  const pid = parsePid(pidText);
  const traceSeconds = seconds('--trace', opts.trace);
  const cpuSeconds = seconds('--cpu', opts.cpu);
  const heapProfileSeconds = seconds('--heap-profile', opts.heapProfile);
  const maxPause = parseMaxPause(opts.maxPause);
  const target = inspectTarget(pid);
  const transport = await connect(target, opts.via, note);

  let interrupted = false;
  const onSigint = (): void => {
    interrupted = true;
    note('interrupted; closing the connection to the target');
    void transport.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  try {
    const info = await transport.info();
    const cap = CaptureDir.create(opts.out ?? defaultCaptureDir(pid), {
      pid,
      nodeVersion: info.nodeVersion,
      time: new Date().toISOString(),
      transport: transport.kind,
      streamscopeVersion: info.streamscopeVersion,
      argv: info.argv,
    });
    note(`capturing pid ${pid} (node ${info.nodeVersion}) via ${transport.description} into ${cap.dir}`);

    const step = async (name: string, fn: () => Promise<void>): Promise<boolean> => {
      try {
        await fn();
        return true;
      } catch (err) {
        const msg = errorLine(err);
        cap.error(name, msg);
        note(`${name}: ${msg}`);
        return false;
      }
    };

    await step('streams', async () => {
      const s = await transport.streams();
      if (s === null) {
        note('streamscope is not loaded in the target: no streams.json');
        return;
      }
      cap.writeJson('streams.json', s);
    });

    let facts: Record<string, unknown> | null = null;
    await step('process', async () => {
      facts = await transport.processFacts(opts.sampleMs ?? 1000);
      cap.writeJson('process.json', facts);
    });

    if (opts.heap) {
      const refusal = preflight(pid, facts, opts.force === true, note);
      if (refusal !== null) {
        cap.error('heap', refusal);
        cap.finish();
        throw new DiagError(`${refusal}; what was taken is in ${cap.dir}`);
      }
      const tooLong = pauseRefusal(pid, usedHeap(facts), HEAP_BYTES_PER_SECOND_FAST, maxPause, opts.force === true);
      if (tooLong !== null) {
        cap.error('heap', tooLong);
        cap.finish();
        throw new DiagError(`${tooLong}; what was taken is in ${cap.dir}`);
      }
    }
    const profiling = await transport.profiling().catch(() => ({ pprof: false, heapSampling: null, cpuContinuous: false }));

    if (heapProfileSeconds !== undefined) {
      note(heapProfileNote(profiling, heapProfileSeconds, transport.kind, usedHeap(facts)));
      await step('heap-profile', async () => {
        const r = await transport.heapProfile(heapProfileSeconds);
        // libraryPaths (agent only): where streamscope's own code lives, so that analyze names the app's frame
        const lib = Array.isArray(r.libraryPaths) && r.libraryPaths.length > 0 ? { streamscope: { libraryPaths: r.libraryPaths } } : {};
        cap.writeJson('heap.heapprofile', { ...(r.profile as object), ...lib });
        await step('heap-profile pprof', async () => writePprof(cap, 'heap', r.profile, r.intervalBytes));
        note(`heap profile: ${r.engine}${r.since === 'start' ? ', sampled since start-up' : ''}${r.stallMs !== undefined ? `, ${r.stallMs.toFixed(1)} ms in the target's calls` : ''}`);
      });
    }
    // With a trace, a CPU profile runs over the trace's window (started together, through a second agent
    // connection or the same inspector session), so that analyze can name each long task's code: with --cpu, that
    // profile is --cpu's, over the longer of the two windows; without, one of the trace's length.
    const cpuWindow = traceSeconds !== undefined && cpuSeconds !== undefined ? Math.max(traceSeconds, cpuSeconds) : cpuSeconds;
    const writeCpu = async (r: CpuAnswer): Promise<void> => {
      cap.writeJson('cpu.cpuprofile', r.profile);
      if (cpuSeconds === undefined) return; // the trace's own profile: cpu.cpuprofile only, as before
      await step('cpu pprof', async () => writePprof(cap, 'cpu', r.profile));
      if (r.engine !== undefined) note(`cpu profile: ${r.engine}${typeof r.stallMs === 'number' ? `, ${r.stallMs.toFixed(1)} ms in the target's calls` : ''}`);
    };
    if (traceSeconds !== undefined) {
      note(TRACE_PAUSE_NOTE);
      // the profile beside the trace costs what a --cpu capture costs to start (through the inspector, the walk)
      if (cpuSeconds === undefined) note(`trace: a CPU profile over the same window names each long task's code; ${cpuPauseNote(profiling, usedHeap(facts), transport.kind)}`);
      else {
        note(cpuPauseNote(profiling, usedHeap(facts), transport.kind));
        note(
          `profiling the CPU for ${cpuWindow} s from the trace's start${cpuWindow !== cpuSeconds ? ` (the trace's window, longer than --cpu ${cpuSeconds})` : ''}, so that it names each long task's code`,
        );
      }
      note(`tracing for ${traceSeconds} s`);
      const alongside = transport.cpuAlongside(cpuWindow ?? traceSeconds).then(
        (answer) => ({ answer }),
        (error: unknown) => ({ error }),
      );
      await step('trace', async () => {
        const out = cap.openStream('trace.json');
        const n = await transport.trace(traceSeconds, out);
        await closeStream(out);
        cap.added('trace.json');
        note(`trace: ${n} events`);
      });
      await step('cpu', async () => {
        const r = await alongside;
        if ('error' in r) throw r.error;
        await writeCpu(r.answer);
      });
    } else if (cpuSeconds !== undefined) {
      note(cpuPauseNote(profiling, usedHeap(facts), transport.kind));
      note(`profiling the CPU for ${cpuSeconds} s`);
      await step('cpu', async () => writeCpu(await transport.cpu(cpuSeconds)));
    }
    if (opts.heap) {
      await step('heap', async () => {
        const out = cap.openStream('heap.heapsnapshot');
        // a snapshot is about 1.8x the used heap (measured: 356 MB for 200 MB): the bar's estimate of the total
        const expected = Math.round((usedHeap(facts) ?? 0) * 1.8);
        const bar = createProgress('heap snapshot', io.stderr as NodeJS.WriteStream);
        try {
          const n = await transport.heap(out, (b) => bar.update(Math.min(b, expected), expected, formatBytes(b)));
          await closeStream(out);
          cap.added('heap.heapsnapshot');
          bar.done();
          note(`heap snapshot: ${formatBytes(n)}`);
        } catch (err) {
          bar.done();
          out.destroy();
          throw err;
        }
      });
    }
    cap.finish();
    io.stdout.write(`${cap.dir}\n`);
    const failed = cap.manifest.errors;
    if (failed.length > 0) {
      throw new DiagError(`capture incomplete: ${failed.map((e) => `${e.step}: ${e.message}`).join('; ')} (the rest is in ${cap.dir})`);
    }
    return 0;
  } finally {
    process.removeListener('SIGINT', onSigint);
    if (!interrupted) await transport.close();
  }
}

function usedHeap(facts: Record<string, unknown> | null): number | null {
  const hs = facts?.heapStatistics as { used_heap_size?: number } | undefined;
  const mu = facts?.memoryUsage as { heapUsed?: number } | undefined;
  const v = hs?.used_heap_size ?? mu?.heapUsed;
  return typeof v === 'number' && v > 0 ? v : null;
}

/** Says the expected pause and memory; returns why the heap step is refused, or null to go ahead. */
function preflight(pid: number, facts: Record<string, unknown> | null, force: boolean, note: (l: string) => void): string | null {
  const used = usedHeap(facts);
  if (used === null) {
    if (force) return null;
    return `heap snapshot refused: the used heap of pid ${pid} is unknown (process facts failed); --force to take it anyway`;
  }
  const fast = Math.max(1, Math.ceil(used / HEAP_BYTES_PER_SECOND_FAST));
  const slow = Math.max(1, Math.ceil(used / HEAP_BYTES_PER_SECOND_SLOW));
  const pause = fast === slow ? `${fast}` : `${fast}-${slow}`;
  const { free, source } = memoryHeadroom(pid);
  const need = PEAK_MEMORY_FACTOR * used;
  note(
    `heap snapshot: pid ${pid} uses ${formatBytes(used)} of heap; expect it to stop serving for about ${pause} s and to need up to ${formatBytes(need)} more memory meanwhile` +
      (free !== null ? ` (${formatBytes(free)} free by ${source})` : ' (free memory unknown)'),
  );
  if (free !== null && free < 2 * used && !force) {
    return `heap snapshot refused: pid ${pid} has ${formatBytes(free)} free (${source}), less than twice its used heap (${formatBytes(2 * used)}); --force to take it anyway`;
  }
  if (free !== null && free < need) note(`warning: free memory is below the expected peak; the target may run out of memory`);
  return null;
}

function closeStream(out: NodeJS.WritableStream & { once: NodeJS.EventEmitter['once'] }): Promise<void> {
  return new Promise((resolve, reject) => {
    out.once('error', reject);
    out.end(() => resolve());
  });
}
