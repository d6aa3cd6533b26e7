import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT } from './helpers/child.js';
import { sleep, until } from './helpers/http.js';

/**
 * A half-open peer: the client's packets vanish (its address is flushed inside its own network namespace, so
 * it neither answers nor resets; the server keeps a permanent neighbour entry, so no ARP failure tells it
 * anything). Server and client each run in a namespace of their own, joined by a veth pair, with the kernel's
 * default sysctls (tcp_keepalive_intvl 75 s, tcp_keepalive_probes 9). Needs root and iproute2.
 */

const ip = fs.existsSync('/usr/sbin/ip') ? '/usr/sbin/ip' : '/sbin/ip';
const canNetns = process.platform === 'linux' && process.getuid?.() === 0 && fs.existsSync(ip);
const tag = String(process.pid);
const NS_S = `ssgs${tag}`;
const NS_C = `ssgc${tag}`;
const IF_S = `gs${tag}`;
const IF_C = `gc${tag}`;
const SERVER_IP = '10.213.0.1';
const CLIENT_IP = '10.213.0.2';
const DEAD_PEER_MS = 2000;
const STALL_MS = 2000;
/** The bound docs/guards.md states: idle time (whole seconds) + 10 keep-alive probes 1 s apart. */
const BOUND_MS = Math.floor(DEAD_PEER_MS / 1000) * 1000 + 10_000;
/** Room for a loaded machine (2 cores, shared). */
const SLACK_MS = 4000;

const run = (...args: string[]): string => execFileSync(ip, args, { encoding: 'utf8' });
const procs: ChildProcess[] = [];

interface Line {
  at: number;
  event: string;
  url?: string;
  kind?: string;
  detail?: string;
  deadPeer?: number;
  stalled?: number;
  errors?: number;
}

function serverIn(port: number, options: object): { lines: Line[] } {
  const lines: Line[] = [];
  const proc = spawn(ip, ['netns', 'exec', NS_S, process.execPath, path.join(ROOT, 'test/fixtures/guards/dead-peer-server.mjs')], {
    env: { ...process.env, STREAMSCOPE_ENTRY: path.join(ROOT, 'dist/esm/index.js'), GUARD_OPTIONS: JSON.stringify(options), PORT: String(port), HOST: SERVER_IP, STREAMSCOPE_AGENT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  procs.push(proc);
  createInterface({ input: proc.stdout! }).on('line', (l) => lines.push({ ...(JSON.parse(l) as Line), at: Date.now() }));
  return { lines };
}

/** A client in its own namespace that reads everything it is sent. */
function clientIn(port: number, urlPath: string): { received: () => number } {
  let received = 0;
  const src = `const s=require('net').connect(${port},'${SERVER_IP}',()=>s.write('GET ${urlPath} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'));s.on('data',d=>console.log(d.length));s.on('error',()=>{});`;
  const proc = spawn(ip, ['netns', 'exec', NS_C, process.execPath, '-e', src], { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(proc);
  createInterface({ input: proc.stdout! }).on('line', (l) => (received += Number(l)));
  return { received: () => received };
}

beforeAll(() => {
  if (!canNetns) return;
  run('netns', 'add', NS_S);
  run('netns', 'add', NS_C);
  run('link', 'add', IF_S, 'netns', NS_S, 'type', 'veth', 'peer', 'name', IF_C, 'netns', NS_C);
  run('-n', NS_S, 'addr', 'add', `${SERVER_IP}/30`, 'dev', IF_S);
  run('-n', NS_C, 'addr', 'add', `${CLIENT_IP}/30`, 'dev', IF_C);
  for (const [ns, dev] of [[NS_S, IF_S], [NS_C, IF_C], [NS_S, 'lo'], [NS_C, 'lo']] as const) run('-n', ns, 'link', 'set', dev, 'up');
  const mac = (JSON.parse(run('-j', '-n', NS_C, 'link', 'show', IF_C)) as Array<{ address: string }>)[0]!.address;
  run('-n', NS_S, 'neigh', 'replace', CLIENT_IP, 'lladdr', mac, 'dev', IF_S, 'nud', 'permanent');
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await sleep(200);
  if (!canNetns) return;
  for (const ns of [NS_S, NS_C]) {
    try {
      run('netns', 'del', ns);
    } catch {
      /* already gone */
    }
  }
});

describe.skipIf(!canNetns)('dead peer (network namespaces)', () => {
  it(`an idle stream to a vanished peer closes within deadPeerMs + 10 s (keep-alive); a busy one is cut by stalledAction; unguarded, both stay open`, async () => {
    const guarded = serverIn(8080, { deadPeerMs: DEAD_PEER_MS, stalledAction: 'destroy', stallAfterMs: STALL_MS });
    const unguarded = serverIn(8081, { stallAfterMs: STALL_MS });
    await until(() => guarded.lines.some((l) => l.event === 'hello') && unguarded.lines.some((l) => l.event === 'hello'), 'the servers to listen', 20_000);
    const idle = clientIn(8080, '/idle');
    const busy = clientIn(8080, '/busy');
    const idleOff = clientIn(8081, '/idle');
    const busyOff = clientIn(8081, '/busy');
    await until(() => idle.received() > 0 && busy.received() > 64 * 1024 && idleOff.received() > 0 && busyOff.received() > 64 * 1024, 'every stream to flow', 20_000);
    await sleep(300); // the idle streams' first event is acknowledged: nothing is in flight on them
    run('-n', NS_C, 'addr', 'flush', 'dev', IF_C); // the peer vanishes: no FIN, no RST, no answer
    const cutAt = Date.now();

    const closed = (srv: { lines: Line[] }, url: string): Line | undefined => srv.lines.find((l) => l.event === 'close' && l.url === url);
    await until(() => closed(guarded, '/idle') && closed(guarded, '/busy'), 'both guarded streams to close', BOUND_MS + SLACK_MS + 5000);
    const idleAfter = closed(guarded, '/idle')!.at - cutAt;
    const busyAfter = closed(guarded, '/busy')!.at - cutAt;
    console.log(`dead peer: idle stream closed ${idleAfter} ms after the peer vanished (bound ${BOUND_MS} ms), busy stream cut after ${busyAfter} ms`);
    expect(idleAfter).toBeLessThanOrEqual(BOUND_MS + SLACK_MS);
    expect(busyAfter).toBeLessThanOrEqual(STALL_MS + SLACK_MS + 2000);
    const findings = guarded.lines.filter((l) => l.event === 'finding');
    expect(findings.some((f) => f.kind === 'guard_action' && /^guard dead_peer:/.test(f.detail!))).toBe(true);
    expect(findings.some((f) => f.kind === 'guard_action' && /^guard stalled_action:/.test(f.detail!))).toBe(true);
    await until(() => guarded.lines.some((l) => l.event === 'metrics' && l.deadPeer === 1 && l.stalled === 1 && l.errors === 2), 'the guard counters');

    // the same streams without the guards: both still open (the kernel would retry for ~15 min, keep-alive is off)
    await sleep(Math.max(0, cutAt + BOUND_MS + SLACK_MS - Date.now()));
    expect(closed(unguarded, '/idle')).toBeUndefined();
    expect(closed(unguarded, '/busy')).toBeUndefined();
    expect(unguarded.lines.filter((l) => l.event === 'finding').map((l) => l.kind)).toEqual(['stalled_write']);
  }, 90_000);
});
