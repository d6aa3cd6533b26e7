import { describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Tracker, type TrackerListener } from '../src/core/tracker.js';
import { StreamState, type StreamConfig } from '../src/core/stream-state.js';

// The tracker's event dispatch (pure logic: a Tracker of its own, states over plain objects).
const config = { stallAfterMs: 5000, danglingAfterMs: 5000, trackAsync: false, captureStacks: false, tracer: undefined, route: undefined } as StreamConfig;
const state = (): StreamState => new StreamState({ method: 'GET' } as IncomingMessage, {} as ServerResponse, config, performance.now());
const EVENTS = ['open', 'firstWrite', 'close', 'release'] as const;

function recorder(component: string, muteIf: (s: StreamState) => boolean, log: string[]): TrackerListener {
  return {
    component,
    open: (s) => {
      log.push(`${component} open ${s.id}`);
      if (muteIf(s)) return false;
    },
    firstWrite: (s) => void log.push(`${component} firstWrite ${s.id}`),
    close: (s) => void log.push(`${component} close ${s.id}`),
    release: (s) => void log.push(`${component} release ${s.id}`),
  };
}

describe('Tracker.emit', () => {
  it("a listener whose open() answers false gets none of that stream's later events; other streams and other listeners are untouched", () => {
    const t = new Tracker();
    const log: string[] = [];
    const a = state();
    const b = state();
    t.register(recorder('idle', (s) => s === a, log));
    t.register(recorder('busy', () => false, log));
    for (const e of EVENTS) for (const s of [a, b]) t.emit(e, s);
    expect(log.filter((l) => l.startsWith('idle'))).toEqual([
      `idle open ${a.id}`,
      `idle open ${b.id}`,
      `idle firstWrite ${b.id}`,
      `idle close ${b.id}`,
      `idle release ${b.id}`,
    ]);
    expect(log.filter((l) => l.startsWith('busy'))).toHaveLength(8);
  });

  it('a throwing handler is counted under its component and the others still run; a listener removed stops receiving', () => {
    const t = new Tracker();
    const log: string[] = [];
    t.register({ component: 'bad', close: () => { throw new Error('boom'); } });
    const off = t.subscribe(recorder('sub', () => false, log));
    const s = state();
    t.emit('close', s);
    expect(t.internalErrors.get('bad')).toBe(1);
    expect(log).toEqual([`sub close ${s.id}`]);
    off();
    t.emit('close', s);
    expect(log).toHaveLength(1);
    expect(t.internalDepth).toBe(0);
  });
});
