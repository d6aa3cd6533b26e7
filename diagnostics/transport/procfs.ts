import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { cgroupMemory, hostMemAvailable } from '../../src/consumers/agent/protocol.js';
import { DiagError } from '../errors.js';

/**
 * What `diag` learns about a target pid from /proc before it touches it (Linux). Every check that fails
 * throws a DiagError with one line saying why, so nothing is sent to a process that could be hurt by it.
 */

export interface Target {
  pid: number;
  uid: number | null;
  /** Executable name (basename of /proc/<pid>/exe, else argv[0]). */
  exe: string;
  argv: string[];
  /** The process catches SIGUSR1 (Node installs a handler to start the inspector). */
  catchesSigusr1: boolean | null;
}

export function parsePid(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 2 ** 22) throw new DiagError(`"${text}" is not a process id`);
  return Number(text);
}

function myUid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : -1;
}

/** Checks that `pid` exists and belongs to this user; reads what /proc says about it. */
export function inspectTarget(pid: number): Target {
  try {
    process.kill(pid, 0);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') throw new DiagError(`no process with pid ${pid}`);
    if (code === 'EPERM') throw new DiagError(`pid ${pid} belongs to another user; run diag as that user`);
    throw new DiagError(`cannot signal pid ${pid}: ${code ?? String(err)}`);
  }
  let uid: number | null = null;
  let catchesSigusr1: boolean | null = null;
  const status = readProc(pid, 'status');
  if (status !== null) {
    const m = status.match(/^Uid:\s+(\d+)/m);
    if (m) uid = Number(m[1]);
    const c = status.match(/^SigCgt:\s+([0-9a-f]+)/m);
    if (c) catchesSigusr1 = (BigInt(`0x${c[1]}`) & (1n << 9n)) !== 0n; // SIGUSR1 = 10
  }
  let argvFromPs: string[] | null = null;
  if (status === null) {
    // no /proc (macOS, BSD): ask ps
    const ps = psInfo(pid);
    if (ps) {
      uid = ps.uid;
      argvFromPs = ps.args;
    }
  }
  const me = myUid();
  if (uid !== null && me >= 0 && uid !== me) throw new DiagError(`pid ${pid} belongs to uid ${uid}, not you (uid ${me}); run diag as that user`);
  const argv = argvFromPs ?? (readProc(pid, 'cmdline') ?? '').split('\0').filter((a) => a !== '');
  let exe: string;
  try {
    exe = path.basename(fs.readlinkSync(`/proc/${pid}/exe`));
  } catch {
    exe = path.basename(argv[0] ?? '');
  }
  return { pid, uid, exe, argv, catchesSigusr1 };
}

function psInfo(pid: number): { uid: number; args: string[] } | null {
  try {
    const out = execFileSync('ps', ['-o', 'uid=', '-o', 'args=', '-p', String(pid)], { encoding: 'utf8', timeout: 2000 }).trim();
    const m = out.match(/^(\d+)\s+(.*)$/);
    return m ? { uid: Number(m[1]), args: (m[2] as string).split(/\s+/) } : null;
  } catch {
    return null;
  }
}

export function isNodeLike(t: Target): boolean {
  return /^(node|nodejs)(\d+(\.\d+)*)?$/.test(t.exe) || /(^|\/)(node|nodejs)$/.test(t.argv[0] ?? '');
}

function readProc(pid: number, file: string): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return null;
  }
}

/** NODE_OPTIONS of the target, when readable. */
export function nodeOptions(pid: number): string {
  const env = readProc(pid, 'environ');
  if (env === null) return '';
  const e = env.split('\0').find((x) => x.startsWith('NODE_OPTIONS='));
  return e ? e.slice('NODE_OPTIONS='.length) : '';
}

/** The flags that make a Node.js process refuse the inspector, as found on its command line or NODE_OPTIONS. */
export function inspectorBlockers(t: Target): string[] {
  const words = [...t.argv.slice(1), ...nodeOptions(t.pid).split(/\s+/)];
  const found = new Set<string>();
  for (const w of words) {
    if (w === '--disable-sigusr1') found.add('--disable-sigusr1');
    if (w === '--permission' || w === '--experimental-permission') found.add(`${w} (the permission model)`);
  }
  return [...found];
}

/** Inodes of the sockets `pid` holds open (its `/proc/<pid>/fd` links `socket:[inode]`); null without /proc. */
export function socketInodes(pid: number): Set<string> | null {
  const inodes = new Set<string>();
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        const link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
        const m = link.match(/^socket:\[(\d+)\]$/);
        if (m) inodes.add(m[1] as string);
      } catch {
        /* closed meanwhile */
      }
    }
  } catch {
    return null;
  }
  return inodes;
}

interface TcpEntry {
  local: string;
  localPort: number;
  remote: string;
  remotePort: number;
  state: string;
  inode: string;
}

/** The TCP sockets of `pid`'s network namespace (/proc/<pid>/net/tcp and tcp6); null without /proc. */
function tcpTable(pid: number): TcpEntry[] | null {
  const out: TcpEntry[] = [];
  let any = false;
  for (const table of ['tcp', 'tcp6']) {
    const text = readProc(pid, `net/${table}`);
    if (text === null) continue;
    any = true;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const [local, lp] = (f[1] as string).split(':') as [string, string];
      const [remote, rp] = (f[2] as string).split(':') as [string, string];
      out.push({ local, localPort: parseInt(lp, 16), remote, remotePort: parseInt(rp, 16), state: f[3] as string, inode: f[9] as string });
    }
  }
  return any ? out : null;
}

/**
 * Who listens where a connection to 127.0.0.1:<port> would land: 'target' when every such listening
 * socket (loopback or wildcard address) is one of `pid`'s, 'other' when any is not (a squatter), 'none'
 * when nothing listens there, 'unknown' without /proc. Checked before diag sends the port a single byte.
 */
export function loopbackListener(pid: number, port: number): 'target' | 'other' | 'none' | 'unknown' {
  const mine = socketInodes(pid);
  const table = tcpTable(pid);
  if (mine === null || table === null) return 'unknown';
  const listeners = table.filter((e) => e.state === '0A' && e.localPort === port && isLoopbackHex(e.local));
  if (listeners.length === 0) return 'none';
  return listeners.every((e) => mine.has(e.inode)) ? 'target' : 'other';
}

/**
 * Whether diag's connection from 127.0.0.1:<clientPort> to <port> was accepted by `pid`: the server end
 * (local port `port`, remote port `clientPort`) is one of `pid`'s sockets. Closes the gap between the
 * listener check and the connection (the target's inspector closing and a squatter binding meanwhile).
 */
export function connectionAcceptedBy(pid: number, port: number, clientPort: number): boolean {
  const mine = socketInodes(pid);
  const table = tcpTable(pid);
  if (mine === null || table === null) return false;
  return table.some((e) => e.state === '01' && e.localPort === port && e.remotePort === clientPort && isLoopbackHex(e.remote) && mine.has(e.inode));
}

/** The port a SIGUSR1 would open `t`'s inspector on: its --inspect-port / --inspect[-brk]=[host:]port, else 9229. */
export function expectedInspectorPort(t: Target): number {
  let port = 9229;
  const words = [...t.argv.slice(1), ...nodeOptions(t.pid).split(/\s+/)];
  for (let i = 0; i < words.length; i++) {
    const w = words[i] as string;
    if (w === '--') break;
    const m = w.match(/^--(?:inspect-port|debug-port|inspect|inspect-brk|inspect-wait)=(?:.*:)?(\d+)$/);
    if (m) port = Number(m[1]);
    else if ((w === '--inspect-port' || w === '--debug-port') && /^(?:.*:)?\d+$/.test(words[i + 1] ?? '')) port = Number((words[i + 1] as string).split(':').pop());
  }
  return port;
}

/**
 * TCP ports on loopback that `pid` listens on (from /proc/<pid>/fd and /proc/<pid>/net/tcp{,6}).
 * Empty when /proc is not readable.
 */
export function loopbackListenPorts(pid: number): number[] {
  const inodes = socketInodes(pid);
  if (inodes === null) return [];
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    const text = readProc(pid, `net/${table}`);
    if (text === null) continue;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue; // 0A = LISTEN
      const inode = f[9] as string;
      if (!inodes.has(inode)) continue;
      const [addr, portHex] = (f[1] as string).split(':') as [string, string];
      if (!isLoopbackHex(addr)) continue;
      ports.push(parseInt(portHex, 16));
    }
  }
  return [...new Set(ports)];
}

/** 127.x.x.x, ::1, ::ffff:127.x.x.x, or the wildcard (reachable on loopback too); diag still connects to 127.0.0.1 only. */
function isLoopbackHex(addr: string): boolean {
  if (addr.length === 8) return addr.endsWith('7F') || addr === '00000000'; // little-endian
  return addr === '00000000000000000000000001000000' || addr === '00000000000000000000000000000000' || /^0000000000000000FFFF0000[0-9A-F]{6}7F$/.test(addr);
}

export interface Headroom {
  /** Bytes the target can still use (cgroup room or host MemAvailable, whichever is smaller); null when unknown. */
  free: number | null;
  source: string;
}

/** Free memory for `pid`: min(cgroup limit - usage, host MemAvailable). */
export function memoryHeadroom(pid: number): Headroom {
  // for tests and for operators who know better than /proc (documented in docs/diag.md)
  const assumed = process.env.DIAG_ASSUME_FREE_BYTES;
  if (assumed !== undefined && assumed !== '' && Number.isFinite(Number(assumed))) return { free: Number(assumed), source: 'DIAG_ASSUME_FREE_BYTES' };
  let free = hostMemAvailable();
  let source = free === null ? 'unknown' : 'host MemAvailable';
  const cg = cgroupMemory(pid);
  if (cg !== null && cg.limit !== null && cg.usage !== null) {
    const room = Math.max(0, cg.limit - cg.usage);
    if (free === null || room < free) {
      free = room;
      source = 'cgroup memory limit';
    }
  }
  return { free, source };
}

/** Whether a process is still alive (for stale sockets). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
