// The trace and CPU-profile analyzers on a real trace (NodeTracing through an inspector session) and a
// real profile of a child process, plus the pure rules on hand-made events.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeTrace, analyzeTraceFile, ASYNC_ALIVE_THRESHOLD } from '../diagnostics/trace/trace.js';
import { analyzeCpuProfileFile } from '../diagnostics/trace/cpuprofile.js';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trace-analyze-'));
  execFileSync(process.execPath, [path.join(import.meta.dirname, 'fixtures/heap/trace-child.mjs'), dir], { timeout: 30_000 });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('trace analyzer on a real NodeTracing trace', () => {
  it('reports both event-loop blocks: the timer callback and the HTTP handler', () => {
    const read = () => {
      const t = analyzeTraceFile(path.join(dir, 'trace.json'));
      const long = t.findings.filter((f) => f.kind === 'long_task');
      return { t, long, maxes: long.map((f) => f.maxMs!).sort((a, b) => b - a) };
    };
    let { t, long, maxes } = read();
    if (!maxes.some((m) => m >= 145 && m < maxes[0]!)) {
      // The handler's block has no span of its own: it is found as a stretch where the thread's CPU time kept
      // up with the clock. On a CI machine whose cores the other test workers take, that can fail once;
      // take one fresh trace (same child, same blocks) rather than weaken what is asserted.
      execFileSync(process.execPath, [path.join(import.meta.dirname, 'fixtures/heap/trace-child.mjs'), dir], { timeout: 30_000 });
      ({ t, long, maxes } = read());
    }
    expect(maxes.length).toBeGreaterThanOrEqual(2);
    expect(maxes[0]).toBeGreaterThanOrEqual(195); // the 200 ms timer
    expect(maxes.some((m) => m >= 145 && m < maxes[0])).toBe(true); // the 150 ms handler
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
  it(`reports async resources left alive only from ${ASYNC_ALIVE_THRESHOLD} of a type, and never promises`, () => {
    const ev = (ph: string, name: string, id: number) => ({ ph, name, cat: 'node,node.async_hooks', id: `0x${id.toString(16)}`, ts: id, pid: 1, tid: 1 });
    const events = [];
    for (let i = 0; i < ASYNC_ALIVE_THRESHOLD; i++) events.push(ev('b', 'Timeout', i));
    for (let i = 100; i < 100 + ASYNC_ALIVE_THRESHOLD - 1; i++) events.push(ev('b', 'TCPWRAP', i));
    for (let i = 200; i < 250; i++) events.push(ev('b', 'PROMISE', i));
    events.push(ev('b', 'Timeout', 999), ev('e', 'Timeout', 999));
    const t = analyzeTrace(events, 'x');
    expect(t.findings.map((f) => `${f.kind}:${f.count}`)).toEqual([`undestroyed_async:${ASYNC_ALIVE_THRESHOLD}`]);
    expect(t.summary.async.destroyed).toBe(1);
  });
});
