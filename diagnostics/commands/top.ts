/**
 * `diag top <pid> [--once] [--sort age|buffered] [--interval MS]`: a live table of a process's open streams,
 * redrawn in place. Keys: `s` toggles the sort (age / buffered bytes), `q` quits.
 */
import type { Finding, StreamSnapshot } from '../../src/types.js';
import { DiagError } from '../errors.js';
import { formatBytes } from '../progress.js';
import { AgentClient, findAgentSocket } from '../transport/agent-client.js';
import { inspectTarget, parsePid } from '../transport/procfs.js';
import type { Io } from './capture.js';

export type SortKey = 'age' | 'buffered';

export interface TopOptions {
  once?: boolean;
  sort?: SortKey;
  interval?: number;
}

interface Frame {
  pid: number;
  nodeVersion: string;
  streams: StreamSnapshot[];
  findings: number;
  /** Recent `guard_action` findings (streams cut or producers stopped by an opt-in guard), newest last. */
  guardActions?: Finding[];
}

/** Guard actions listed under the table at most. */
const GUARD_LINES = 5;

function age(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function flags(s: StreamSnapshot): string {
  const f: string[] = [];
  if (s.clientClosed) f.push('client-gone');
  if (s.blockedForMs > 0) f.push('blocked');
  if (s.ended) f.push('ended');
  for (const k of s.findings) f.push(k);
  return f.join(',');
}

export function sortStreams(list: StreamSnapshot[], key: SortKey): StreamSnapshot[] {
  const by = key === 'age' ? (s: StreamSnapshot) => s.ageMs : (s: StreamSnapshot) => s.bufferedBytes;
  return list.slice().sort((a, b) => by(b) - by(a) || a.id - b.id);
}

/** The table as lines, fitted to `width` columns and `height` rows. */
export function renderFrame(frame: Frame, key: SortKey, width: number, height: number, interactive: boolean): string[] {
  const sorted = sortStreams(frame.streams, key);
  const buffered = frame.streams.reduce((n, s) => n + s.bufferedBytes, 0);
  const lines: string[] = [];
  lines.push(
    `diag top · pid ${frame.pid} · node ${frame.nodeVersion} · ${frame.streams.length} streams · ${formatBytes(buffered)} buffered · ${frame.findings} recent findings` +
      (frame.guardActions?.length ? ` · ${frame.guardActions.length} guard actions` : ''),
  );
  lines.push(`sorted by ${key === 'age' ? 'age' : 'buffered bytes'}${interactive ? ` · s: sort by ${key === 'age' ? 'buffered bytes' : 'age'} · q: quit` : ''}`);
  const head = ['ID', 'ROUTE', 'AGE', 'BYTES', 'WRITES', 'BLOCKED', 'BUFFERED', 'FLAGS'];
  const rows = sorted.map((s) => [String(s.id), `${s.method} ${s.route}`, age(s.ageMs), formatBytes(s.bytes), String(s.writes), String(s.blockedWrites), formatBytes(s.bufferedBytes), flags(s)]);
  const fixed = [6, 0, 7, 10, 8, 8, 10];
  const routeWidth = Math.max(12, Math.min(40, width - fixed.reduce((a, b) => a + b + 1, 0) - 16));
  const widths = [6, routeWidth, 7, 10, 8, 8, 10];
  const fmt = (r: string[]): string =>
    r
      .map((c, i) => {
        if (i === r.length - 1) return c;
        const w = widths[i] as number;
        const cell = c.length > w ? `${c.slice(0, w - 1)}…` : c;
        return i === 1 || i === 0 ? cell.padEnd(w) : cell.padStart(w);
      })
      .join(' ')
      .slice(0, width);
  lines.push('');
  lines.push(fmt(head));
  const room = Math.max(1, height - lines.length - 1);
  for (const r of rows.slice(0, room)) lines.push(fmt(r));
  if (rows.length > room) lines.push(`… ${rows.length - room} more`);
  if (rows.length === 0) lines.push('(no open streams)');
  const guards = frame.guardActions ?? [];
  if (guards.length > 0 && lines.length + 2 < height) {
    // Streams a guard cut are closed and gone from the table: list the latest actions under it.
    lines.push('');
    lines.push(`guard actions (latest ${Math.min(GUARD_LINES, guards.length)} of ${guards.length}):`);
    for (const f of guards.slice(-GUARD_LINES).slice(0, Math.max(1, height - lines.length))) {
      lines.push(`  stream ${f.streamId} ${f.method} ${f.route} ${age(Math.max(0, Date.now() - f.at))} ago: ${f.detail}`.slice(0, width));
    }
  }
  return lines;
}

export async function runTop(pidText: string, opts: TopOptions, io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const pid = parsePid(pidText);
  let key: SortKey = opts.sort ?? 'age';
  if (key !== 'age' && key !== 'buffered') throw new DiagError(`--sort must be "age" or "buffered", got "${String(key)}"`);
  const interval = opts.interval ?? 1000;
  if (!Number.isFinite(interval) || interval < 100) throw new DiagError('--interval must be at least 100 (ms)');
  inspectTarget(pid);
  const sock = findAgentSocket(pid);
  if (sock === null) throw new DiagError(`pid ${pid} runs no streamscope agent; diag top needs it (start the app with --import streamscope/register)`);
  const client = await AgentClient.connect(sock);
  const hello = await client.hello();
  const out = io.stdout as NodeJS.WriteStream;

  const take = async (): Promise<Frame> => {
    const r = await client.request<{ streams: StreamSnapshot[]; findings: unknown[] }>('streams');
    const guardActions = r.findings.filter((f): f is Finding => typeof f === 'object' && f !== null && (f as Finding).kind === 'guard_action');
    return { pid, nodeVersion: hello.nodeVersion, streams: r.streams, findings: r.findings.length, guardActions };
  };

  if (opts.once || !out.isTTY) {
    const lines = renderFrame(await take(), key, out.columns || 160, opts.once ? 10_000 : out.rows || 10_000, false);
    out.write(lines.join('\n') + '\n');
    client.close();
    return 0;
  }

  const stdin = process.stdin;
  let stop: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (stop = resolve));
  let last: Frame | null = null;
  const draw = (): void => {
    if (!last) return;
    const lines = renderFrame(last, key, out.columns || 80, out.rows || 24, true);
    out.write(`\x1b[H${lines.map((l) => `${l}\x1b[K`).join('\n')}\x1b[J`);
  };
  const onKey = (data: Buffer): void => {
    const k = data.toString();
    if (k === 'q' || k === '\x03' || k === 'Q') stop(0);
    else if (k === 's' || k === 'S') {
      key = key === 'age' ? 'buffered' : 'age';
      draw();
    }
  };
  out.write('\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J');
  if (stdin.isTTY) stdin.setRawMode(true);
  stdin.on('data', onKey);
  stdin.resume();
  out.on('resize', draw);
  const onSig = (): void => stop(0);
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  let error: unknown = null;
  const loop = async (): Promise<void> => {
    while (true) {
      try {
        last = await take();
      } catch (err) {
        error = err;
        stop(2);
        return;
      }
      draw();
      const next = await Promise.race([new Promise<'tick'>((r) => setTimeout(() => r('tick'), interval)), done.then(() => 'stop' as const)]);
      if (next === 'stop') return;
    }
  };
  void loop();
  const code = await done;
  out.write('\x1b[?25h\x1b[?1049l');
  if (stdin.isTTY) stdin.setRawMode(false);
  stdin.removeListener('data', onKey);
  stdin.pause();
  out.removeListener('resize', draw);
  process.removeListener('SIGINT', onSig);
  process.removeListener('SIGTERM', onSig);
  client.close();
  if (error !== null) throw error instanceof DiagError ? error : new DiagError(String((error as Error)?.message ?? error));
  return code;
}
