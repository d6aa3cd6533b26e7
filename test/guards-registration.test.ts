import { describe, expect, it } from 'vitest';
import { instrument } from '../src/index.js';
import { getTracker } from '../src/core/tracker.js';

// The guards' listener would answer `false` at every stream's open in a process that sets no guard: it is
// registered with the first config that sets one (src/setup.ts), so such a process never calls it.
// (A file of its own: the consumers register once per process, and vitest runs each file in a fresh one.)
describe('guards registration', () => {
  it('a process whose configs set no guard has no guards listener; the first guarded config registers it', () => {
    const guards = (): number => getTracker().listeners.filter((l) => l.component === 'guards').length;
    instrument(() => undefined, { route: '/plain' });
    instrument(() => undefined, { route: '/off', zombieAction: 'none', stalledAction: 'none' });
    expect(guards()).toBe(0);
    instrument(() => undefined, { route: '/guarded', zombieAction: 'throw' });
    expect(guards()).toBe(1);
    instrument(() => undefined, { route: '/guarded-too', maxBufferedBytes: 1024 });
    expect(guards()).toBe(1);
  });
});
