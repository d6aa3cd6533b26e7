/**
 * Values of a route by method and outcome (a histogram child, the attributes of a record), each made once; the
 * last one asked for is answered without a lookup, since most streams of a route share one method and outcome.
 * Used at a stream's close by the prom-client metrics and the OpenTelemetry ones alike.
 */
export class ByMethodOutcome<T extends object> {
  private readonly by = new Map<string, Map<string, T>>();
  private lastMethod = '';
  private lastOutcome = '';
  private last: T | null = null;

  constructor(private readonly make: (method: string, outcome: string) => T) {}

  get(method: string, outcome: string): T {
    const last = this.last;
    if (last !== null && method === this.lastMethod && outcome === this.lastOutcome) return last;
    let byOutcome = this.by.get(method);
    if (byOutcome === undefined) {
      byOutcome = new Map();
      this.by.set(method, byOutcome);
    }
    let v = byOutcome.get(outcome);
    if (v === undefined) {
      v = this.make(method, outcome);
      byOutcome.set(outcome, v);
    }
    this.lastMethod = method;
    this.lastOutcome = outcome;
    this.last = v;
    return v;
  }
}
