/**
 * One naming rule for the adapters (docs/instrument.md, "Adapters"), in the built package, ESM and CJS: every
 * `streamscope/<framework>` exports `streamscope` (the framework's own way in: middleware factory or plugin), also
 * as its default export, and the old names are the very same function (deprecated aliases). And the main entry's
 * classes, now published as interfaces, are still the runtime classes of what the factories return (instanceof).
 * Needs `npm run build` first.
 */
import { describe, expect, it } from 'vitest';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { ROOT } from './helpers/child.js';

const require = createRequire(import.meta.url);
type Mod = Record<string, unknown>;
const load = {
  ESM: (entry: string): Promise<Mod> => import(`${ROOT}/dist/esm/${entry}.js`) as Promise<Mod>,
  CJS: (entry: string): Promise<Mod> => Promise.resolve(require(`${ROOT}/dist/cjs/${entry}.cjs`) as Mod),
};

/** What each adapter exports: the rule's names, and the deprecated aliases of `streamscope`. */
const ADAPTERS: Record<string, { names: string[]; aliases: string[] }> = {
  express: { names: ['default', 'instrument', 'streamscope'], aliases: [] },
  fastify: { names: ['default', 'streamscope', 'streamscopeFastify'], aliases: ['streamscopeFastify'] },
  koa: { names: ['default', 'streamscope', 'streamscopeKoa'], aliases: ['streamscopeKoa'] },
  hono: { names: ['default', 'instrumentFetch', 'stream', 'streamSSE', 'streamText', 'streamscope', 'streamscopeHono'], aliases: ['streamscopeHono'] },
};

for (const flavour of ['ESM', 'CJS'] as const) {
  describe(`${flavour} build`, () => {
    for (const [entry, { names, aliases }] of Object.entries(ADAPTERS)) {
      it(`streamscope/${entry} exports streamscope (also default); ${aliases.join(', ') || 'no old name'} the same function`, async () => {
        const mod = await load[flavour](entry);
        expect(Object.keys(mod).filter((k) => k !== '__esModule' && k !== 'module.exports').sort()).toEqual(names);
        expect(typeof mod.streamscope).toBe('function');
        expect(mod.default).toBe(mod.streamscope);
        for (const alias of aliases) expect(mod[alias]).toBe(mod.streamscope);
      });
    }

    it('the main entry: SseStream, Hub, MemoryStore, RedisStore are the classes of what sse(), createHub(), memoryStore(), redisStore() return', async () => {
      const m = await load[flavour]('index');
      const { sse, createHub, memoryStore, redisStore, SseStream, Hub, MemoryStore, RedisStore } = m as Record<string, (...a: unknown[]) => unknown> & Record<string, new (...a: unknown[]) => unknown>;
      const hub = createHub() as { close(): Promise<void> };
      expect(hub).toBeInstanceOf(Hub);
      expect(new Hub()).toBeInstanceOf(Hub);
      expect(memoryStore()).toBeInstanceOf(MemoryStore);
      const store = redisStore({ url: 'redis://127.0.0.1:1' }) as { close(): Promise<void> };
      expect(store).toBeInstanceOf(RedisStore);
      await store.close();
      await hub.close();
      let instance: boolean | undefined;
      const server = http.createServer((req, res) => {
        const s = sse(req, res) as { close(): void };
        instance = s instanceof SseStream;
        s.close();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        await new Promise<void>((resolve, reject) => {
          http.get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, (res) => {
            res.resume();
            res.on('end', resolve);
          }).on('error', reject);
        });
        expect(instance).toBe(true);
      } finally {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    });
  });
}
