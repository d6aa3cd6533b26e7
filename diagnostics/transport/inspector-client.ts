import http from 'node:http';
import net from 'node:net';
import WebSocket from 'ws';
import { DiagError } from '../errors.js';
import { connectionAcceptedBy, expectedInspectorPort, inspectorBlockers, isNodeLike, loopbackListener, loopbackListenPorts, type Target } from './procfs.js';

/**
 * The V8 inspector of a running Node.js process, on loopback only. Opens it with SIGUSR1 when it is not
 * open yet, and closes it again afterwards (an inspector that was already open is used and left open).
 * Never enables the Debugger domain, so `debugger` statements in the target never pause it.
 */

/** Printed before diag opens an inspector (docs/security.md, "Inspector window"). */
export function inspectorWindowWarning(pid: number): string {
  return `warning: while pid ${pid}'s inspector is open (until this capture ends), any local user can connect to it and run code as pid ${pid}'s user; the agent (node --import streamscope/register) has no such window`;
}

function squatted(pid: number, port: number): DiagError {
  return new DiagError(
    `127.0.0.1:${port}, where pid ${pid}'s inspector would listen, is held by another process; refusing to speak to it (it could pose as the target); use the agent`,
  );
}

interface ListEntry {
  id?: string;
  type?: string;
  webSocketDebuggerUrl?: string;
}

/** GET http://127.0.0.1:<port>/json/list; null when nothing answers like an inspector. */
function jsonList(port: number, timeoutMs = 1000): Promise<ListEntry[] | null> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/json/list', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (body.length > 1e6) req.destroy();
      });
      res.on('end', () => {
        try {
          const v = JSON.parse(body) as unknown;
          resolve(Array.isArray(v) ? (v as ListEntry[]) : null);
        } catch {
          resolve(null);
        }
      });
      res.on('error', () => resolve(null));
      res.on('close', () => resolve(null));
    });
    const deadline = setTimeout(() => req.destroy(), timeoutMs);
    req.on('close', () => clearTimeout(deadline));
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:<port>. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setTimeout(1000, () => {
      s.destroy();
      resolve(false);
    });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class InspectorSession {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(v: Record<string, unknown>): void; reject(e: Error): void }>();
  private readonly handlers = new Map<string, (params: Record<string, unknown>) => void>();
  private closed: Error | null = null;

  private constructor(
    private readonly ws: WebSocket,
    readonly port: number,
    /** The inspector was open before diag came: leave it open. */
    readonly wasOpen: boolean,
    readonly pid: number,
  ) {
    ws.on('message', (data) => {
      let msg: { id?: number; method?: string; params?: Record<string, unknown>; result?: Record<string, unknown>; error?: { message?: string } };
      try {
        msg = JSON.parse(data.toString()) as typeof msg;
      } catch {
        return;
      }
      if (typeof msg.id === 'number') {
        const w = this.waiting.get(msg.id);
        this.waiting.delete(msg.id);
        if (!w) return;
        if (msg.error) w.reject(new DiagError(`the inspector refused: ${msg.error.message ?? 'error'}`));
        else w.resolve(msg.result ?? {});
      } else if (msg.method) {
        this.handlers.get(msg.method)?.(msg.params ?? {});
      }
    });
    const gone = (): void => {
      this.closed ??= new DiagError(`the inspector connection to pid ${pid} closed (did the process exit?)`);
      for (const w of this.waiting.values()) w.reject(this.closed);
      this.waiting.clear();
    };
    ws.on('close', gone);
    ws.on('error', gone);
  }

  /** When diag opened the inspector (SIGUSR1 sent), in ms since the epoch; null when it was open already. */
  openedAt: number | null = null;

  /**
   * Finds (or opens) the inspector of `target` and connects to it. Only a port whose listening socket is
   * one of the target's own (its inode among /proc/<pid>/fd) is ever spoken to; a squatter is refused.
   */
  static async open(target: Target, openTimeoutMs = 5000, note: (line: string) => void = () => undefined): Promise<InspectorSession> {
    const before = loopbackListenPorts(target.pid); // the target's own listening sockets only
    const existing = await connectAny(target.pid, before, true);
    if (existing) return existing;

    if (!isNodeLike(target)) throw new DiagError(`pid ${target.pid} is not a Node.js process (${target.exe || 'unknown executable'})`);
    const blockers = inspectorBlockers(target);
    if (blockers.length > 0) throw new DiagError(`pid ${target.pid} refuses the inspector: it runs with ${blockers.join(', ')}`);
    if (target.catchesSigusr1 === false) {
      throw new DiagError(`pid ${target.pid} does not handle SIGUSR1 (started with --disable-sigusr1?), so its inspector cannot be opened; use the agent`);
    }
    const expected = expectedInspectorPort(target);
    const holder = expected === 0 ? 'none' : loopbackListener(target.pid, expected);
    if (holder === 'unknown') {
      throw new DiagError(`cannot tell which process listens on the inspector port of pid ${target.pid} without /proc, so diag will not open it; use the agent`);
    }
    if (holder === 'other') throw squatted(target.pid, expected);
    note(inspectorWindowWarning(target.pid));
    const openedAt = Date.now();
    try {
      process.kill(target.pid, 'SIGUSR1');
    } catch (err) {
      throw new DiagError(`cannot signal pid ${target.pid}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    const old = new Set(before);
    const deadline = Date.now() + openTimeoutMs;
    while (Date.now() < deadline) {
      await sleep(50);
      const now = loopbackListenPorts(target.pid).filter((p) => !old.has(p));
      const s = await connectAny(target.pid, now, false);
      if (s) {
        s.openedAt = openedAt;
        return s;
      }
    }
    if (expected !== 0 && loopbackListener(target.pid, expected) === 'other') throw squatted(target.pid, expected);
    throw new DiagError(
      `the inspector of pid ${target.pid} did not open within ${openTimeoutMs / 1000} s after SIGUSR1 (port ${expected || 'chosen at random'} taken, the permission model, or the app handles SIGUSR1 itself); use the agent`,
    );
  }

  on(method: string, handler: (params: Record<string, unknown>) => void): void {
    this.handlers.set(method, handler);
  }

  send(method: string, params: object = {}): Promise<Record<string, unknown>> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /**
   * Evaluates an expression that returns a JSON string (it must catch everything itself); returns it parsed.
   * `require` is bound only during the synchronous evaluation; expressions use process.getBuiltinModule when present.
   */
  async evaluateJson(expression: string, awaitPromise = false): Promise<Record<string, unknown>> {
    const r = await this.send('Runtime.evaluate', { expression, includeCommandLineAPI: true, returnByValue: true, awaitPromise, silent: true });
    const result = r.result as { type?: string; value?: unknown } | undefined;
    if (r.exceptionDetails || typeof result?.value !== 'string') throw new DiagError('evaluation in the target failed');
    return JSON.parse(result.value) as Record<string, unknown>;
  }

  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  /**
   * Disconnects. When diag opened the inspector, it closes it in the target first and waits until the port
   * refuses connections; returns false when the port is still open after that.
   */
  async close(): Promise<boolean> {
    this.ws.resume();
    if (!this.wasOpen && !this.closed) {
      // inspector.close() blocks the target until every session is gone, so it runs on a timer, well after
      // diag has read the answer and disconnected; diag disconnects within 2 s whatever happens
      await Promise.race([this.evaluateJson(CLOSE_INSPECTOR).catch(() => undefined), sleep(2000)]);
    }
    await new Promise<void>((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once('close', () => resolve());
      this.ws.close();
      setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 2000).unref();
    });
    if (this.wasOpen) return true;
    for (let i = 0; i < 30; i++) {
      if (!(await portOpen(this.port))) return true;
      await sleep(100);
    }
    return false;
  }

  static async connectTo(port: number, pid: number, wasOpen: boolean): Promise<InspectorSession | null> {
    // not a byte to a port whose listener is not the target's own socket
    if (loopbackListener(pid, port) !== 'target') return null;
    const list = await jsonList(port);
    const entry = list?.find((e) => typeof e.id === 'string' && /^[\w-]+$/.test(e.id) && e.type === 'node') ?? list?.[0];
    if (!entry || typeof entry.id !== 'string' || !/^[\w-]+$/.test(entry.id)) return null;
    // loopback only: the URL is built here, never taken from the answer
    const ws = new WebSocket(`ws://127.0.0.1:${port}/${entry.id}`, { perMessageDeflate: false, maxPayload: 2 ** 30 });
    const ok = await new Promise<boolean>((resolve) => {
      ws.once('open', () => resolve(true));
      ws.once('error', () => resolve(false));
    });
    // and the connection was accepted by the target itself, not by a squatter that bound the port meanwhile
    const clientPort = (ws as unknown as { _socket?: net.Socket })._socket?.localPort;
    if (!ok || clientPort === undefined || !connectionAcceptedBy(pid, port, clientPort)) {
      ws.terminate();
      return null;
    }
    const s = new InspectorSession(ws, port, wasOpen, pid);
    try {
      const v = await s.evaluateJson('JSON.stringify({ pid: process.pid })');
      if (v.pid === pid) return s;
    } catch {
      /* not ours */
    }
    ws.terminate();
    return null;
  }
}

async function connectAny(pid: number, ports: number[], wasOpen: boolean): Promise<InspectorSession | null> {
  for (const port of ports) {
    const s = await InspectorSession.connectTo(port, pid, wasOpen);
    if (s) return s;
  }
  return null;
}

/** Runs in the target: never throws, now or later. */
const CLOSE_INSPECTOR = `(() => {
  try {
    const i = typeof process.getBuiltinModule === 'function' ? process.getBuiltinModule('inspector') : require('inspector');
    const t = setTimeout(() => { try { i.close(); } catch {} }, 250);
    if (t && typeof t.unref === 'function') t.unref();
    return JSON.stringify({ ok: true });
  } catch (e) {
    try { return JSON.stringify({ ok: false, error: String(e && e.message) }); } catch { return '{"ok":false}'; }
  }
})()`;
