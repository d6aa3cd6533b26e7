import type http from 'node:http';
import { afterEach } from 'vitest';
import { onFinding, type Finding } from '../../src/index.js';
import { startServer, type TestServer } from './http.js';

/**
 * A test file's cleanup list (run after each test, last in first out), and the two helpers that use it: a
 * server on a free port, and the findings of one route.
 */
export function testScope(): {
  cleanup: Array<() => unknown>;
  serve(handler: http.RequestListener): Promise<TestServer>;
  collect(route: string): Finding[];
} {
  const cleanup: Array<() => unknown> = [];
  afterEach(async () => {
    while (cleanup.length) await cleanup.pop()!();
  });
  return {
    cleanup,
    async serve(handler) {
      const s = await startServer(handler);
      cleanup.push(() => s.close());
      return s;
    },
    collect(route) {
      const seen: Finding[] = [];
      cleanup.push(onFinding((f) => f.route === route && seen.push(f)));
      return seen;
    },
  };
}
