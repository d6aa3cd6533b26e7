// Unit test of pure logic (attributing a trace's long tasks to a CPU profile's samples): synthetic profiles.
import { describe, expect, it } from 'vitest';
import { attributeLongTasks } from '../diagnostics/trace/attribute.js';
import type { TraceFinding } from '../diagnostics/report/types.js';

/** A profile whose samples, 1 ms apart from t = 0, all fall in one function. */
function profile(functionName: string, url: string, samples: number): unknown {
  return {
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1, columnNumber: -1 }, children: [2] },
      { id: 2, callFrame: { functionName, url, lineNumber: 114, columnNumber: 6 }, children: [] },
    ],
    startTime: 0,
    samples: Array.from({ length: samples }, () => 2),
    timeDeltas: Array.from({ length: samples }, () => 1000),
  };
}

function task(): TraceFinding {
  return { kind: 'long_task', severity: 'warning', count: 1, maxMs: 60, totalMs: 60, detail: 'PIPEWRAP_CALLBACK › PROMISE_CALLBACK: blocked', startUs: 0, endUs: 60_000 };
}

describe('attributeLongTasks', () => {
  it("a task spent in the inspector's synchronous post (the capture starting its profiler) is the capture's own: info", () => {
    const f = task();
    expect(attributeLongTasks([f], profile('post', 'node:inspector', 80))).toBe(1);
    expect(f.where![0]).toMatchObject({ functionName: 'post', url: 'node:inspector' });
    expect(f.severity).toBe('info');
    expect(f.detail).toMatch(/it ran post node:inspector:115:7 .*not the app/);
  });

  it("a task in the app's own code keeps its severity", () => {
    const f = task();
    expect(attributeLongTasks([f], profile('busy', 'file:///app/server.mjs', 80))).toBe(1);
    expect(f.severity).toBe('warning');
    expect(f.detail).toMatch(/it ran busy file:\/\/\/app\/server\.mjs:115:7/);
    expect(f.detail).not.toMatch(/not the app/);
  });
});
