import { expect } from 'vitest';

export interface LeakReport {
  findings: Array<{ kind: string; route?: string; count?: number; path?: string[]; rawPath?: string[] }>;
}

/**
 * What `diag analyze --json` must find in a capture of the stream-server fixture after
 * `hangUps(port, '/leak', 3)` and `neverReading(port, '/flood', 2)`, whichever transport took it.
 */
export function expectLeakReport(stdout: string): LeakReport {
  const report = JSON.parse(stdout) as LeakReport;
  expect(report.findings.filter((f) => f.kind === 'zombie_producer').map((f) => f.route)).toEqual(['/leak', '/leak', '/leak']);
  const count = (kind: string): number => report.findings.filter((f) => f.kind === kind).reduce((n, f) => n + (f.count ?? 0), 0);
  expect(count('retained_response')).toBe(3);
  expect(count('queued_write_buffer')).toBe(2);
  // the readable path starts at the producer's timer and names its callback; the raw one runs from a GC root
  const retained = report.findings.find((f) => f.kind === 'retained_response');
  expect(retained?.path?.at(-1)).toBe('ServerResponse');
  expect(retained?.path?.slice(0, 2)).toEqual(['active timer', '_onTimeout']);
  expect(retained?.path?.[2]).toMatch(/stream-server\.mjs:\d+:\d+/);
  expect(retained?.rawPath).toEqual(expect.arrayContaining(['Timeout', '_onTimeout', 'res']));
  return report;
}
