/** `diag ls [--json]`: Node.js processes of this user that run the streamscope agent. */
import fs from 'node:fs';
import path from 'node:path';
import { candidateDirs, removeStaleSockets, uid, unsafeDirReason } from '../../src/consumers/agent/protocol.js';
import type { HelloResult } from '../../src/consumers/agent/protocol.js';
import { errorLine } from '../errors.js';
import { AgentClient } from '../transport/agent-client.js';
import { alive } from '../transport/procfs.js';
import type { Io } from './capture.js';

export interface LsEntry {
  pid: number;
  nodeVersion: string;
  streamscopeVersion: string;
  openStreams: number;
  uptimeSec: number;
  command: string;
  socket: string;
  /** Parent pid (null from older agents). */
  ppid: number | null;
  /** node:cluster worker id (PM2 cluster mode included), null when not a worker. */
  clusterWorkerId: number | null;
}

async function probe(file: string): Promise<HelloResult | 'refused' | 'silent'> {
  let client: AgentClient | null = null;
  try {
    client = await AgentClient.connect(file, 1500);
    const timer = new Promise<'silent'>((r) => setTimeout(() => r('silent'), 1500).unref());
    return await Promise.race([client.hello(), timer]);
  } catch (err) {
    return /ECONNREFUSED|ENOENT/.test(errorLine(err)) ? 'refused' : 'silent';
  } finally {
    client?.close();
  }
}

/** Lists live agents; removes sockets left behind by processes that are gone. */
export async function listAgents(note: (line: string) => void = () => undefined): Promise<LsEntry[]> {
  const out: LsEntry[] = [];
  for (const dir of candidateDirs()) {
    if (!fs.existsSync(dir)) continue;
    const why = unsafeDirReason(dir);
    if (why !== null) {
      note(`skipping ${dir}: ${why}`);
      continue;
    }
    removeStaleSockets(dir); // pids that are gone; a live pid whose socket refuses is handled below
    for (const name of fs.readdirSync(dir)) {
      const m = name.match(/^(\d+)\.sock$/);
      if (!m) continue;
      const pid = Number(m[1]);
      const file = path.join(dir, name);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(file);
      } catch {
        continue;
      }
      if (!st.isSocket() || (uid() >= 0 && st.uid !== uid())) continue;
      const dead = !alive(pid);
      const h = dead ? 'refused' : await probe(file);
      if (h === 'refused') {
        // nobody listens: the process is gone (or its pid was reused); the socket is stale
        try {
          fs.unlinkSync(file);
        } catch {
          /* raced */
        }
        continue;
      }
      if (h === 'silent') {
        note(`pid ${pid}: the agent did not answer (busy, or its event loop is blocked)`);
        continue;
      }
      out.push({
        pid: h.pid,
        nodeVersion: h.nodeVersion,
        streamscopeVersion: h.streamscopeVersion,
        openStreams: h.openStreams,
        uptimeSec: h.uptimeSec,
        command: [...h.execArgv.length ? ['node', ...h.execArgv] : ['node'], ...h.argv.slice(1)].join(' '),
        socket: file,
        ppid: typeof h.ppid === 'number' ? h.ppid : null,
        clusterWorkerId: typeof h.clusterWorkerId === 'number' ? h.clusterWorkerId : null,
      });
    }
  }
  return out.sort((a, b) => a.pid - b.pid);
}

export async function runLs(opts: { json?: boolean }, io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const list = await listAgents((l) => io.stderr.write(`diag: ${l}\n`));
  if (opts.json) {
    io.stdout.write(JSON.stringify(list, null, 2) + '\n');
    return 0;
  }
  if (list.length === 0) {
    io.stdout.write('no process runs the streamscope agent (start one with: node --import streamscope/register app.js)\n');
    return 0;
  }
  const rows = [['PID', 'NODE', 'STREAMS', 'UPTIME', 'COMMAND'], ...tree(list).map(({ e, prefix }) => [prefix + String(e.pid), e.nodeVersion, String(e.openStreams), `${e.uptimeSec}s`, e.command])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) io.stdout.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ') + '\n');
  return 0;
}

/**
 * Workers under their primary: an entry whose parent is a listed agent follows it, indented, with its
 * cluster worker id before its command (`└ 1235 … [worker 1] node app.js`). Everything else stays in pid order.
 */
function tree(list: LsEntry[]): Array<{ e: LsEntry; prefix: string }> {
  const pids = new Set(list.map((e) => e.pid));
  const childrenOf = new Map<number, LsEntry[]>();
  for (const e of list) {
    if (e.ppid !== null && e.ppid !== e.pid && pids.has(e.ppid)) {
      const kids = childrenOf.get(e.ppid) ?? [];
      kids.push(e);
      childrenOf.set(e.ppid, kids);
    }
  }
  const out: Array<{ e: LsEntry; prefix: string }> = [];
  const visit = (e: LsEntry, depth: number): void => {
    out.push({ e, prefix: depth === 0 ? '' : `${'  '.repeat(depth - 1)}└ ` });
    for (const k of childrenOf.get(e.pid) ?? []) visit(k, depth + 1);
  };
  for (const e of list) if (!(e.ppid !== null && e.ppid !== e.pid && pids.has(e.ppid))) visit(e, 0);
  // a worker's command says which worker it is
  return out.map(({ e, prefix }) => ({ e: e.clusterWorkerId === null ? e : { ...e, command: `[worker ${e.clusterWorkerId}] ${e.command}` }, prefix }));
}
