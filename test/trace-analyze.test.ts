// The trace and CPU-profile analyzers on a real trace (NodeTracing through an inspector session) and a
// real profile of a child process, plus the pure rules on hand-made events.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeTrace, analyzeTraceFile, ASYNC_ALIVE_THRESHOLD } from '../diagnostics/trace/trace.js';
import { analyzeCpuProfileFile } from '../diagnostics/trace/cpuprofile.js';

const CHILD = path.join(import.meta.dirname, 'fixtures/heap/trace-child.mjs');
const dirs: string[] = [];
/** The last core this process may run on: a contended child and its busy neighbour share it. */
const CORE = String(Math.max(0, os.availableParallelism() - 1));

/**
 * Runs the child into a fresh directory. `contended`: it shares one core with a busy process, as on a loaded
 * host, so its thread's CPU time lags the clock even while its JavaScript runs.
 */
function takeTrace(contended: boolean): string {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'trace-analyze-'));
  dirs.push(out);
  if (!contended) {
    execFileSync(process.execPath, [CHILD, out], { timeout: 30_000 });
    return out;
  }
  const hog = spawn('taskset', ['-c', CORE, process.execPath, '-e', 'for (const t = Date.now(); Date.now() - t < 20000; );'], { stdio: 'ignore' });
  try {
    execFileSync('taskset', ['-c', CORE, process.execPath, CHILD, out], { timeout: 30_000 });
  } finally {
    hog.kill('SIGKILL');
  }
  return out;
}

let dir: string;
beforeAll(() => {
  dir = takeTrace(false);
});
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('trace analyzer on a real NodeTracing trace', () => {
  it.each([
    ['alone', false],
    ['sharing its core with a busy process', true],
  ])('reports both event-loop blocks, the timer callback and the HTTP handler (%s)', (_, contended) => {
    const read = (where: string) => {
      const t = analyzeTraceFile(path.join(where, 'trace.json'));
      const long = t.findings.filter((f) => f.kind === 'long_task');
      return { t, long, maxes: long.map((f) => f.maxMs!).sort((a, b) => b - a) };
    };
    let { t, long, maxes } = read(contended ? takeTrace(true) : dir);
    if (!maxes.some((m) => m >= 145 && m < maxes[0]!)) {
      // The handler's block has no span of its own: it is a run of events between which the thread never went
      // idle, told from a descheduled thread by V8's interrupt checks, GC and callback ends (a heuristic: under
      // one shared core it found the block in 50 of 50 traces here; the CPU-time rule alone missed 6 of 13).
      // One fresh trace, same assertions.
      ({ t, long, maxes } = read(takeTrace(contended)));
    }
    expect(maxes.length).toBeGreaterThanOrEqual(2);
    expect(maxes[0]).toBeGreaterThanOrEqual(195); // the 200 ms timer
    expect(maxes.some((m) => m >= 145 && m < maxes[0]!)).toBe(true); // the 150 ms handler
    expect(long.some((f) => f.detail.includes('Timeout_CALLBACK'))).toBe(true);
    expect(t.summary.longTasks.count).toBe(long.reduce((s, f) => s + f.count, 0));
  });

  it('counts GC pauses and the intervals that were never cleared', () => {
    const t = analyzeTraceFile(path.join(dir, 'trace.json'));
    expect(t.summary.gc.count).toBeGreaterThan(0);
    expect(t.summary.gc.totalMs).toBeGreaterThan(0);
    expect(t.summary.async.byType.Timeout).toBeGreaterThanOrEqual(12);
    const alive = t.findings.find((f) => f.kind === 'undestroyed_async' && f.detail.includes('Timeout'));
    expect(alive?.count).toBeGreaterThanOrEqual(12);
    expect(t.summary.async.alive).toBe(t.summary.async.created - t.summary.async.destroyed);
  });
});

describe('CPU profile analyzer', () => {
  it('puts the hot function first by self time', () => {
    const c = analyzeCpuProfileFile(path.join(dir, 'cpu.cpuprofile'));
    const hot = c.top.find((f) => f.functionName === 'hotLoop');
    expect(hot).toBeDefined();
    expect(hot!.selfPercent).toBeGreaterThan(30);
    const named = c.top.filter((f) => !f.functionName.startsWith('('));
    expect(named[0].functionName).toBe('hotLoop');
    expect(c.top.reduce((s, f) => s + f.selfPercent, 0)).toBeLessThanOrEqual(100.5);
  });
});

describe('trace rules', () => {
  const X = (name: string, ts: number, dur: number, cat = 'node,node.environment') => ({ ph: 'X', name, cat, ts, dur, pid: 1, tid: 1 });
  it('counts a nested long span once, under the outermost, named after the longest inner one', () => {
    const t = analyzeTrace(
      [
        X('RunTimers', 0, 120_000),
        { ph: 'b', name: 'Timeout_CALLBACK', cat: 'node,node.async_hooks', id: '0x1', ts: 1000 },
        { ph: 'e', name: 'Timeout_CALLBACK', cat: 'node,node.async_hooks', id: '0x1', ts: 110_000 },
        X('CheckImmediate', 200_000, 10_000),
      ],
      'x',
    );
    expect(t.summary.longTasks.count).toBe(1);
    expect(t.findings).toHaveLength(1);
    expect(t.findings[0].detail).toContain('RunTimers › Timeout_CALLBACK');
    expect(t.findings[0].maxMs).toBe(120);
  });
  // Main-thread events with thread time (tts): a handler's JavaScript has no span; only its events show it ran.
  const at = (ph: string, name: string, cat: string, ms: number, cpuMs: number) => ({ ph, name, cat, ts: ms * 1000, tts: cpuMs * 1000, pid: 1, tid: 1 });
  const ENV = 'node,node.environment';
  const HOOKS = 'node,node.async_hooks';
  it('a run without a span that lost the CPU is still one block when V8 interrupt checks and GC mark it busy', () => {
    // 120 ms of JavaScript that got a third of the CPU: each gap has cpu < 0.5 × wall, and each ends in an event
    // that only happens while JavaScript runs
    const events = [at('X', 'CheckImmediate', ENV, 0, 0)];
    const markers: Array<[string, string, string]> = [
      ['X', 'V8.BytecodeBudgetInterrupt', 'v8.execute'],
      ['E', 'MinorGC', 'devtools.timeline,v8'],
      ['X', 'V8.StackGuard', 'v8.execute'],
      ['X', 'V8.GCScavenger', 'v8'],
    ];
    for (let i = 1; i <= 12; i++) {
      const [ph, name, cat] = markers[i % markers.length]!;
      events.push(at(ph, name, cat, i * 10, (i * 10) / 3));
    }
    // then the loop goes idle (5 ms, no CPU) before its next phase: the block ends at the last busy event
    events.push(at('X', 'RunTimers', ENV, 125, 40.1));
    const long = analyzeTrace(events, 'x').findings.filter((f) => f.kind === 'long_task');
    expect(long).toHaveLength(1);
    expect(long[0]!.maxMs).toBe(120);
  });
  it('an idle wait that ends in a handler creating a timer is idle, not a block; a busy gap ending so is busy', () => {
    const idle = analyzeTrace(
      [at('X', 'CheckImmediate', ENV, 0, 0), at('b', 'Timeout', HOOKS, 900, 0.3), at('X', 'RunTimers', ENV, 901, 1)],
      'x',
    );
    expect(idle.findings.filter((f) => f.kind === 'long_task')).toEqual([]);
    // the same shape where the thread got 40 % of the CPU in the gap: JavaScript ran all along
    const busy = analyzeTrace(
      [at('X', 'CheckImmediate', ENV, 0, 0), at('b', 'Timeout', HOOKS, 100, 40), at('X', 'RunTimers', ENV, 101, 41)],
      'x',
    );
    expect(busy.findings.filter((f) => f.kind === 'long_task').map((f) => f.maxMs)).toEqual([101]);
  });
  it(`reports async resources left alive only from ${ASYNC_ALIVE_THRESHOLD} of a type, and never promises`, () => {
    const ev = (ph: string, name: string, id: number) => ({ ph, name, cat: 'node,node.async_hooks', id: `0x${id.toString(16)}`, ts: id, pid: 1, tid: 1 });
    const events = [];
    for (let i = 0; i < ASYNC_ALIVE_THRESHOLD; i++) events.push(ev('b', 'Timeout', i));
    for (let i = 100; i < 100 + ASYNC_ALIVE_THRESHOLD - 1; i++) events.push(ev('b', 'TCPWRAP', i));
    for (let i = 200; i < 250; i++) events.push(ev('b', 'PROMISE', i));
    events.push(ev('b', 'Timeout', 999), ev('e', 'Timeout', 999));
    const t = analyzeTrace(events, 'x');
    // created together, by no connection that closed: traffic in flight, info only
    expect(t.findings.map((f) => `${f.kind}:${f.severity}:${f.count}`)).toEqual([`undestroyed_async:info:${ASYNC_ALIVE_THRESHOLD}`]);
    expect(t.summary.async.destroyed).toBe(1);
  });
  const hook = (ph: string, name: string, id: number, ms: number, trigger?: number) => ({
    ph,
    name,
    cat: 'node,node.async_hooks',
    id: `0x${id.toString(16)}`,
    ts: ms * 1000,
    pid: 1,
    tid: 1,
    ...(trigger !== undefined ? { args: { data: { triggerAsyncId: trigger, executionAsyncId: trigger } } } : {}),
  });
  it('warns for timers whose connection closed (and ran after), not for those of open connections', () => {
    const events = [];
    for (let c = 0; c < 4; c++) {
      const conn = 1000 + c * 10;
      events.push(hook('b', 'HTTPINCOMINGMESSAGE', conn, c, 1), hook('b', 'Timeout', conn + 1, c + 1, conn));
    }
    // connections 0 and 1 close; their timers keep running
    events.push(hook('e', 'HTTPINCOMINGMESSAGE', 1000, 100), hook('e', 'HTTPINCOMINGMESSAGE', 1010, 100));
    events.push(hook('b', 'Timeout_CALLBACK', 1001, 150), hook('e', 'Timeout_CALLBACK', 1001, 151));
    events.push(hook('b', 'Timeout_CALLBACK', 1011, 150), hook('e', 'Timeout_CALLBACK', 1011, 151));
    events.push(hook('b', 'Timeout_CALLBACK', 1021, 150), hook('e', 'Timeout_CALLBACK', 1021, 151));
    const f = analyzeTrace(events, 'x').findings.filter((x) => x.kind === 'undestroyed_async');
    expect(f.map((x) => `${x.severity}:${x.count}`)).toEqual(['warning:2']);
    expect(f[0]!.detail).toContain('closed');
  });
  it('warns for resources one owner keeps creating over the trace; a steady one-per-connection state is quiet', () => {
    const events = [];
    // one owner (a pre-trace interval, id 7) creates a timer every 100 ms and never clears them
    for (let i = 0; i < 10; i++) events.push(hook('b', 'Timeout', 100 + i, i * 100, 7));
    // 20 keep-alive connections (pre-trace ids) each re-arm one timeout: the old one destroyed, a new one alive
    for (let c = 0; c < 20; c++) {
      events.push(hook('b', 'Timeout', 500 + c, c * 40, 300 + c), hook('e', 'Timeout', 500 + c, c * 40 + 30));
      events.push(hook('b', 'Timeout', 600 + c, c * 40 + 30, 300 + c));
    }
    const f = analyzeTrace(events, 'x').findings.filter((x) => x.kind === 'undestroyed_async');
    expect(f.map((x) => `${x.severity}:${x.count}`)).toEqual(['warning:10', 'info:20']);
  });
  it('a long task whose thread hardly ran (it waited for a CPU) is info; one that ran is a warning', () => {
    const events = [
      { ph: 'X', name: 'RunTimers', cat: 'node,node.environment', ts: 0, dur: 120_000, tts: 0, tdur: 5_000, pid: 1, tid: 1 },
      { ph: 'X', name: 'CheckImmediate', cat: 'node,node.environment', ts: 200_000, dur: 120_000, tts: 5_000, tdur: 110_000, pid: 1, tid: 1 },
    ];
    const t = analyzeTrace(events, 'x');
    expect(t.findings.map((f) => `${f.severity}:${f.detail.split(':')[0]}`).sort()).toEqual(['info:RunTimers', 'warning:CheckImmediate']);
  });
});
