/**
 * `diag analyze <DIR | FILE.heapsnapshot | FILE.json> [--json] [--html FILE] [--fail-on warning|error]`
 *
 * A capture directory is analyzed file by file (streams.json, heap.heapsnapshot, trace.json,
 * cpu.cpuprofile) and gets a `report.json` (mode 0600). A single file is recognized by its content.
 * Exit code: 0 done, 1 a finding at or above `--fail-on`, 2 bad usage or unreadable input (one line on
 * stderr, no stack trace).
 */
import fs from 'node:fs';
import path from 'node:path';
import { analyzeHeapFile } from '../heap/analyze.js';
import { InputError, oneLine } from '../heap/input-error.js';
import { analyzeTrace, traceEventsOf } from '../trace/trace.js';
import { analyzeCpuProfile, isCpuProfile } from '../trace/cpuprofile.js';
import { attributeLongTasks } from '../trace/attribute.js';
import { createProgress } from '../progress.js';
import { REPORT_VERSION, type Report, type ReportFinding, type RouteStat, type StreamFinding, type TraceFinding } from '../report/types.js';
import { renderText } from '../report/text.js';
import { renderHtml } from '../report/html.js';
import { checkCaptureDir, exists, inspectCaptureFile, openInput, readJsonInput, writeOutput } from '../transport/safe-fs.js';
import { analyzeHeapProfile, isHeapProfile } from '../profile/heapprofile.js';
import type { Finding, StreamSnapshot } from '../../src/types.js';

export interface AnalyzeOptions {
  json?: boolean;
  html?: string;
  failOn?: 'warning' | 'error';
  /** An earlier capture (directory or .heapprofile) of the same process: its heap profile is the diff's base. */
  base?: string;
}

export interface AnalyzeIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export { InputError };

const MAX_JSON_BYTES = 400 * 1024 * 1024;

/** Run `diag analyze`; resolves to the exit code. Never throws. */
export async function runAnalyze(target: string, opts: AnalyzeOptions = {}, io?: AnalyzeIo): Promise<number> {
  const out = io?.stdout ?? process.stdout;
  const err = io?.stderr ?? process.stderr;
  try {
    if (opts.failOn !== undefined && opts.failOn !== 'warning' && opts.failOn !== 'error') {
      throw new InputError(`--fail-on must be "warning" or "error", got "${String(opts.failOn)}"`);
    }
    if (typeof target !== 'string' || target === '') throw new InputError('analyze needs a capture directory or a file');
    const report = analyzeTarget(target, (err as NodeJS.WriteStream).isTTY ? (err as NodeJS.WriteStream) : undefined, opts.base);
    if (opts.html) writeOutput(opts.html, renderHtml(report)); // never through a link at that name
    await write(out, opts.json ? `${JSON.stringify(publicReport(report), null, 2)}\n` : renderText(report));
    if (report.incomplete?.length) {
      // the rest of the capture was analyzed and printed; the unreadable part still makes this exit 2
      throw new InputError(`${report.incomplete.join('; ')} (the rest of the capture was analyzed)`);
    }
    return exitCode(report.findings, opts.failOn);
  } catch (e) {
    // anything but an InputError is a bug in diag: still one line, but saying so
    const msg = e instanceof InputError ? e.message : `internal error while analyzing ${target}: ${(e as Error)?.message ?? String(e)}`;
    await write(err, `diag: ${oneLine(msg)}\n`);
    return 2;
  }
}

/** Write and wait for the buffer to drain; a reader that went away (EPIPE from `| head`) ends the wait. */
function write(stream: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('error', done);
      resolve();
    };
    stream.once('error', done);
    if (stream.write(text)) done();
    else stream.once('drain', done);
  });
}

export function exitCode(findings: ReportFinding[], failOn?: 'warning' | 'error'): number {
  if (!failOn) return 0;
  return findings.some((f) => f.severity === 'error' || (failOn === 'warning' && f.severity === 'warning')) ? 1 : 0;
}

/** What `--json` prints and `report.json` holds: the contract's shape, plus `source`. */
export function publicReport(r: Report): Omit<Report, 'streams'> {
  const { streams: _streams, profiles: _profiles, ...rest } = r;
  return rest;
}

/** Analyze a capture directory or a single file into a report (also writes DIR/report.json). */
export function analyzeTarget(target: string, tty?: NodeJS.WriteStream, base?: string): Report {
  const baseProfile = base === undefined ? undefined : readBaseProfile(base);
  // the operator's own path may go through links; everything inside it is opened without following any
  let real: string;
  let st: fs.Stats;
  try {
    real = fs.realpathSync(target);
    st = fs.lstatSync(real);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `${target}: no such file or directory` : `cannot read ${target}: ${code ?? (e as Error).message}`);
  }
  const report: Report = {
    version: REPORT_VERSION,
    findings: [],
    summary: { streams: 0, responses: 0 },
    source: { target },
  };
  if (st.isDirectory()) {
    checkCaptureDir(real);
    analyzeDirectory(real, report, tty);
    try {
      writeOutput(path.join(real, 'report.json'), `${JSON.stringify(publicReport(report), null, 2)}\n`);
    } catch {
      /* a read-only capture is still analyzed; the report goes to stdout */
    }
  } else if (st.isFile()) {
    analyzeFile(real, report, tty);
  } else {
    throw new InputError(`${target} is neither a capture directory nor a regular file`);
  }
  if (baseProfile !== undefined) {
    if (report.profiles?.heap === undefined) throw new InputError(`--base needs a heap profile in ${target} (capture it with --heap-profile)`);
    report.summary.heapProfile = analyzeHeapProfile(report.profiles.heap as never, report.summary.heapProfile?.file ?? target, baseProfile);
  }
  sortFindings(report);
  return report;
}

function analyzeDirectory(dir: string, report: Report, tty?: NodeJS.WriteStream): void {
  const has = (f: string): boolean => exists(path.join(dir, f)); // a link counts, and is then refused
  const known = ['manifest.json', 'streams.json', 'heap.heapsnapshot', 'trace.json', 'cpu.cpuprofile', 'heap.heapprofile'];
  if (!known.some(has)) throw new InputError(`${dir} is not a capture directory: it has none of ${known.join(', ')}`);
  // each file on its own: a failed heap step (an empty or cut snapshot) must not hide the streams and trace
  const failed: string[] = [];
  const each = (name: string, fn: (file: string) => void): void => {
    const file = path.join(dir, name);
    if (!has(name)) return;
    try {
      inspectCaptureFile(file); // a regular file of yours or root's, not a link
      fn(file);
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      failed.push(e.message);
    }
  };
  each('manifest.json', (file) => {
    const m = readJson(file);
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new InputError(`${file} is not a capture manifest`);
    report.source.manifest = m as Record<string, unknown>;
  });
  each('streams.json', (file) => addStreams(readJson(file), file, report));
  each('heap.heapsnapshot', (file) => addHeap(file, report, tty));
  each('trace.json', (file) => addTrace(readJson(file), file, report));
  each('cpu.cpuprofile', (file) => {
    const profile = readJson(file);
    report.summary.cpu = analyzeCpuProfile(profile, file);
    (report.profiles ??= {}).cpu = profile;
    // a profile over the trace's window tells where each long task ran
    attributeLongTasks(
      report.findings.filter((f): f is TraceFinding & { source: 'trace' } => f.source === 'trace'),
      profile,
    );
  });
  each('heap.heapprofile', (file) => addHeapProfile(readJson(file), file, report));
  for (const f of report.findings) {
    if (f.source === 'trace') {
      delete f.startUs;
      delete f.endUs;
    }
  }
  if (failed.length) report.incomplete = failed;
}

function analyzeFile(file: string, report: Report, tty?: NodeJS.WriteStream): void {
  if (looksLikeHeapSnapshot(file)) {
    addHeap(file, report, tty);
    return;
  }
  const data = readJson(file);
  if (Array.isArray(data) || (typeof data === 'object' && data !== null && 'traceEvents' in data)) {
    addTrace(data, file, report);
  } else if (isCpuProfile(data)) {
    report.summary.cpu = analyzeCpuProfile(data, file);
    (report.profiles ??= {}).cpu = data;
  } else if (isHeapProfile(data)) {
    addHeapProfile(data, file, report);
  } else if (typeof data === 'object' && data !== null && Array.isArray((data as { streams?: unknown }).streams)) {
    addStreams(data, file, report);
  } else if (typeof data === 'object' && data !== null && 'snapshot' in data) {
    throw new InputError(`${file} is not a valid V8 heap snapshot`);
  } else {
    throw new InputError(`${file} is not a heap snapshot, trace, CPU profile, heap profile or streams.json`);
  }
}

/** A heap snapshot starts with `{"snapshot":` (whitespace allowed). */
function looksLikeHeapSnapshot(file: string): boolean {
  if (file.endsWith('.heapsnapshot')) return true;
  let fd: number | undefined;
  try {
    fd = openInput(file).fd;
    const buf = Buffer.alloc(64);
    const n = fs.readSync(fd, buf, 0, 64, 0);
    return /^\s*\{\s*"snapshot"\s*:/.test(buf.toString('utf8', 0, n));
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function readJson(file: string): unknown {
  return readJsonInput(file, MAX_JSON_BYTES);
}

function addHeap(file: string, report: Report, tty?: NodeJS.WriteStream): void {
  const progress = tty ? createProgress('analyzing heap', tty) : undefined;
  try {
    const heap = analyzeHeapFile(file, {
      onProgress: progress ? (phase, done, total) => progress.update(done, total, phase) : undefined,
    });
    report.summary.heap = heap.summary;
    report.summary.responses = heap.summary.responses.total;
    for (const f of heap.findings) report.findings.push({ ...f, source: 'heap' });
  } finally {
    progress?.done();
  }
}

function addHeapProfile(data: unknown, file: string, report: Report): void {
  if (!isHeapProfile(data)) throw new InputError(`${file} is not a V8 sampled heap profile`);
  report.summary.heapProfile = analyzeHeapProfile(data, file);
  (report.profiles ??= {}).heap = data;
}

/** The heap profile of `--base`: a capture directory's heap.heapprofile, or a .heapprofile file. */
function readBaseProfile(base: string): { profile: never; file: string } {
  let file = base;
  try {
    if (fs.statSync(base).isDirectory()) {
      checkCaptureDir(fs.realpathSync(base)); // the same trust rules as the capture analyzed
      file = path.join(base, 'heap.heapprofile');
    }
  } catch (e) {
    throw new InputError(`--base ${base}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : ((e as NodeJS.ErrnoException).code ?? String(e))}`);
  }
  if (!fs.existsSync(file)) throw new InputError(`--base ${base} has no heap.heapprofile (capture it with --heap-profile)`);
  const data = readJson(file);
  if (!isHeapProfile(data)) throw new InputError(`--base ${file} is not a V8 sampled heap profile`);
  return { profile: data as never, file };
}

function addTrace(data: unknown, file: string, report: Report): void {
  const t = analyzeTrace(traceEventsOf(data, file), file);
  report.summary.trace = t.summary;
  for (const f of t.findings) report.findings.push({ ...f, source: 'trace' });
  if (report.source.target === file) {
    for (const f of report.findings) {
      if (f.source === 'trace') {
        delete f.startUs;
        delete f.endUs;
      }
    }
  }
}

const KINDS = new Set(['stalled_write', 'dangling_stream', 'zombie_producer', 'dangling_async', 'buffered_stream', 'guard_action']);

function addStreams(data: unknown, file: string, report: Report): void {
  if (typeof data !== 'object' || data === null || !Array.isArray((data as { streams?: unknown }).streams)) {
    throw new InputError(`${file} is not a streams.json: no "streams" array`);
  }
  const d = data as { streams: unknown[]; findings?: unknown };
  const streams = d.streams.filter(
    (s): s is StreamSnapshot => typeof s === 'object' && s !== null && typeof (s as StreamSnapshot).id === 'number',
  );
  report.streams = streams;
  report.summary.streams = streams.length;
  if (!report.summary.heap) report.summary.responses = streams.length;
  // one finding per stream and kind: the latest
  const latest = new Map<string, Finding>();
  for (const f of Array.isArray(d.findings) ? d.findings : []) {
    if (typeof f !== 'object' || f === null) continue;
    const x = f as Finding;
    if (!KINDS.has(x.kind) || (x.severity !== 'warning' && x.severity !== 'error')) continue;
    const key = `${x.streamId}\u0000${x.kind}`;
    const prev = latest.get(key);
    if (!prev || (x.at ?? 0) >= (prev.at ?? 0)) latest.set(key, x);
  }
  for (const f of latest.values()) report.findings.push({ ...f, source: 'streams' } as StreamFinding);
  report.summary.routes = routeStats(streams);
}

function routeStats(streams: StreamSnapshot[]): RouteStat[] {
  const by = new Map<string, RouteStat>();
  for (const s of streams) {
    const route = typeof s.route === 'string' ? s.route : '?';
    const r = by.get(route) ?? { route, streams: 0, maxAgeMs: 0, bufferedBytes: 0 };
    r.streams++;
    r.maxAgeMs = Math.max(r.maxAgeMs, Number(s.ageMs) || 0);
    r.bufferedBytes += Number(s.bufferedBytes) || 0;
    by.set(route, r);
  }
  return [...by.values()].sort((a, b) => b.bufferedBytes - a.bufferedBytes || b.maxAgeMs - a.maxAgeMs);
}

function sortFindings(report: Report): void {
  const rank = (f: ReportFinding): number => (f.severity === 'error' ? 0 : f.severity === 'warning' ? 1 : 2);
  const src = { streams: 0, heap: 1, trace: 2 } as const;
  report.findings.sort((a, b) => rank(a) - rank(b) || src[a.source] - src[b.source]);
}
