import { describe, expect, it } from 'vitest';
import { ByMethodOutcome } from '../src/consumers/by-method-outcome.js';

describe('ByMethodOutcome (the duration child / attributes of a route at close)', () => {
  it('answers each method and outcome with its own value, made once, whatever the order asked', () => {
    const made: string[] = [];
    const by = new ByMethodOutcome((method, outcome) => {
      made.push(`${method} ${outcome}`);
      return { method, outcome };
    });
    const asks: Array<[string, string]> = [];
    for (let i = 0; i < 200; i++) asks.push([i % 3 === 0 ? 'POST' : 'GET', ['completed', 'client_aborted', 'error', 'timeout'][(i * 7) % 4]!]);
    const seen = new Map<string, object>();
    for (const [m, o] of asks) {
      const v = by.get(m, o);
      expect(v).toEqual({ method: m, outcome: o });
      const k = `${m} ${o}`;
      if (seen.has(k)) expect(v).toBe(seen.get(k));
      else seen.set(k, v);
    }
    expect(made.sort()).toEqual([...seen.keys()].sort());
  });
});
