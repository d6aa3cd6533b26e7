/**
 * The agent and the inspector answer alike: `process` and `streams` come from one source (the target functions
 * of src/consumers/agent/protocol.ts, which the agent calls and `diag --via inspector` evaluates as source text). One real
 * target (the built package, with its agent and a SIGUSR1-able inspector), captured both ways with the built
 * CLI; the two process.json and the two streams.json are compared field by field: values that cannot change
 * between the two captures must be equal, the others (uptime, memory, timings, byte counts) must have the same
 * type, and no field may be present in one answer only.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkedSse, killAll, runCli, startServer, tempAgentDir, until } from './fixtures/servers/harness.js';

const agentDir = tempAgentDir();
const env = { STREAMSCOPE_AGENT_DIR: agentDir };
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-parity-'));

afterAll(async () => {
  await killAll();
  fs.rmSync(out, { recursive: true, force: true });
  fs.rmSync(path.dirname(agentDir), { recursive: true, force: true });
});

/** Every leaf path of `v` with its type (`object` keys sorted; arrays by index). */
function shape(v: unknown, at = '$', acc = new Map<string, string>()): Map<string, string> {
  if (Array.isArray(v)) {
    acc.set(at, 'array');
    v.forEach((x, i) => shape(x, `${at}[${i}]`, acc));
  } else if (v !== null && typeof v === 'object') {
    acc.set(at, 'object');
    for (const k of Object.keys(v).sort()) shape((v as Record<string, unknown>)[k], `${at}.${k}`, acc);
  } else acc.set(at, v === null ? 'null' : typeof v);
  return acc;
}

const read = (dir: string, file: string): Record<string, unknown> => JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));

describe('diag --via agent and --via inspector give the same answers', () => {
  it('process.json and streams.json of one target match field for field', async () => {
    const server = await startServer({ agentDir, nodeArgs: ['--inspect-port=0'] });
    const clients = await Promise.all([checkedSse(server.port), checkedSse(server.port)]);
    await until(() => clients.every((c) => c.count() > 3), 'events before the captures');

    const viaAgent = path.join(out, 'agent');
    const viaInspector = path.join(out, 'inspector');
    const a = await runCli(['capture', String(server.pid), '--out', viaAgent, '--via', 'agent'], env);
    expect(a.stderr).toContain('via agent socket');
    expect(a.code).toBe(0);
    const i = await runCli(['capture', String(server.pid), '--out', viaInspector, '--via', 'inspector'], env);
    expect(i.stderr).toContain('via inspector on 127.0.0.1');
    expect(i.code).toBe(0);
    for (const c of clients) c.close();

    // process facts
    const pa = read(viaAgent, 'process.json');
    const pi = read(viaInspector, 'process.json');
    // resource/heap-space lists may differ in length between two moments (a timer more or less): compare their keys as sets
    const stable = (m: Map<string, string>): Map<string, string> =>
      new Map([...m].filter(([k]) => !k.startsWith('$.activeResources.')));
    expect(stable(shape(pi))).toEqual(stable(shape(pa)));
    for (const k of ['pid', 'nodeVersion', 'platform', 'argv', 'execArgv', 'cgroupMemory'] as const) {
      if (k === 'cgroupMemory' && pa.cgroupMemory !== null) {
        const [ca, ci] = [pa.cgroupMemory as Record<string, unknown>, pi.cgroupMemory as Record<string, unknown>];
        expect([ci.source, ci.limit], k).toEqual([ca.source, ca.limit]);
      } else expect(pi[k], k).toEqual(pa[k]);
    }
    expect(pa.pid).toBe(server.pid);
    expect((pa.argv as string[]).at(-1)).toMatch(/stream-server\.mjs$/);
    expect((pa.eventLoopDelay as { sampleMs: number }).sampleMs).toBe(1000);
    expect((pi.eventLoopDelay as { sampleMs: number }).sampleMs).toBe(1000);
    expect((pi.heapSpaces as Array<{ space_name: string }>).map((s) => s.space_name)).toEqual((pa.heapSpaces as Array<{ space_name: string }>).map((s) => s.space_name));

    // streams
    const sa = read(viaAgent, 'streams.json');
    const si = read(viaInspector, 'streams.json');
    expect(Object.keys(si).sort()).toEqual(Object.keys(sa).sort());
    expect(si.pid).toBe(sa.pid);
    type S = Record<string, unknown> & { id: unknown; route: string };
    const byId = (s: Record<string, unknown>): Map<unknown, S> => new Map((s.streams as S[]).filter((x) => x.route === '/events').map((x) => [x.id, x]));
    const [ma, mi] = [byId(sa), byId(si)];
    expect(ma.size).toBe(2);
    expect([...mi.keys()].sort()).toEqual([...ma.keys()].sort());
    for (const [id, x] of ma) {
      const y = mi.get(id)!;
      expect(shape(y)).toEqual(shape(x));
      for (const k of ['id', 'route', 'method', 'startedAt'] as const) if (k in x) expect(y[k], `${String(id)}.${k}`).toEqual(x[k]);
    }
    expect(shape(si.internalErrors).get('$')).toBe('object');
    expect(shape(si.findings).get('$')).toBe('array');
  });
});
