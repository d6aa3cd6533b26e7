import { expect } from 'vitest';

export interface LeakReport {
  findings: Array<{ kind: string; route?: string; count?: number; path?: string[] }>;
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
  // the retainer path leads from a GC root through the producer's timer to the response
  const retained = report.findings.find((f) => f.kind === 'retained_response');
  expect(retained?.path?.at(-1)).toBe('ServerResponse');
  expect(retained?.path).toEqual(expect.arrayContaining(['Timeout', '_onTimeout', 'res']));
  return report;
}
