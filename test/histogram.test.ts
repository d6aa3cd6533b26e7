import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Histogram, Registry } from 'prom-client';
import { StreamHistogram } from '../src/consumers/histogram.js';
import { DURATION_BUCKETS } from '../src/consumers/metrics.js';

// Pure logic: streamscope's per-stream histogram must expose exactly what prom-client's would.
describe('StreamHistogram', () => {
  it('exposes the same text as prom-client Histogram for the same observations', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            route: fc.constantFrom('/a', '/b', '/c"d'),
            outcome: fc.constantFrom('completed', 'error'),
            value: fc.oneof(fc.double({ min: 0, max: 20_000, noNaN: true }), fc.constantFrom(...DURATION_BUCKETS)),
          }),
          { maxLength: 60 },
        ),
        async (observations) => {
          const theirs = new Registry();
          const ours = new Registry();
          theirs.setDefaultLabels({ app: 'x' });
          ours.setDefaultLabels({ app: 'x' });
          const config = { name: 'h_seconds', help: 'help text', labelNames: ['route', 'outcome'], buckets: DURATION_BUCKETS };
          const p = new Histogram({ ...config, registers: [theirs] });
          const s = new StreamHistogram({ ...config, registers: [ours] });
          for (const o of observations) {
            p.labels({ route: o.route, outcome: o.outcome }).observe(o.value);
            s.labels({ route: o.route, outcome: o.outcome }).observe(o.value);
          }
          // the same lines; label order within a line is free (prom-client 14 and 15 differ; Prometheus ignores it)
          const canonical = (line: string): string =>
            line.replace(/\{(.*)\}/, (_m, inner: string) => `{${(inner.match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? []).sort().join(',')}}`);
          const sorted = (t: string): string[] => t.split('\n').map(canonical).sort();
          expect(sorted(await ours.metrics())).toEqual(sorted(await theirs.metrics()));
          // the same JSON, but for prom-client's `exemplar: null` fields (exemplars are not supported here)
          const plain = (m: unknown): unknown => JSON.parse(JSON.stringify(m, (k, v: unknown) => (k === 'exemplar' ? undefined : v)));
          expect(plain(await ours.getMetricsAsJSON())).toEqual(plain(await theirs.getMetricsAsJSON()));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('reset() zeroes the children it keeps; a registry refuses a second metric of the same name', async () => {
    const r = new Registry();
    const s = new StreamHistogram({ name: 'h2', help: 'h', labelNames: ['route'], buckets: [1, 2], registers: [r] });
    const c = s.labels({ route: '/x' });
    c.observe(1.5);
    r.resetMetrics();
    expect((await r.metrics()).split('\n').filter((l) => l.startsWith('h2_count'))).toEqual(['h2_count{route="/x"} 0']);
    c.observe(3);
    expect(await r.metrics()).toContain('h2_bucket{le="+Inf",route="/x"} 1');
    expect(() => new StreamHistogram({ name: 'h2', help: 'h', labelNames: [], buckets: [1], registers: [r] })).toThrow(/already been registered/);
  });
});
