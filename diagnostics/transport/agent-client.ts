import fs from 'node:fs';
import net from 'node:net';
import { candidateDirs, socketPath, uid, unsafeDirReason } from '../../src/consumers/agent/protocol.js';
import type { HelloResult, Op, Request } from '../../src/consumers/agent/protocol.js';
import { DiagError } from '../errors.js';

function defaultTimeout(op: Op, params: Omit<Request, 'id' | 'op'>): number {
  if (op === 'heap') return 0;
  if (op === 'trace' || op === 'cpu' || op === 'heapProfile') return ((params.seconds ?? 0) + 30) * 1000;
  if (op === 'process') return (params.sampleMs ?? 1000) + 10_000;
  return 10_000;
}

/** Finds the agent socket of `pid` in the per-user directories; null when there is none. Throws on unsafe ones. */
export function findAgentSocket(pid: number): string | null {
  for (const dir of candidateDirs()) {
    const file = socketPath(dir, pid);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(file);
    } catch {
      continue;
    }
    if (!st.isSocket()) continue;
    const why = unsafeDirReason(dir);
    if (why !== null) throw new DiagError(`refusing the agent socket of pid ${pid}: ${why}`);
    if (uid() >= 0 && st.uid !== uid()) throw new DiagError(`refusing ${file}: it belongs to uid ${st.uid}`);
    return file;
  }
  return null;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  onEvent?: (event: string, data: unknown) => void;
  onBinary?: (chunk: Buffer) => boolean;
}

/** The client end of the agent protocol (src/consumers/agent/protocol.ts). One request at a time. */
export class AgentClient {
  private buf: Buffer = Buffer.alloc(0);
  private binary = false;
  private nextId = 1;
  private pending: Pending | null = null;
  private closedError: Error | null = null;

  private constructor(
    private readonly sock: net.Socket,
    readonly path: string,
  ) {
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (err) => this.fail(new DiagError(`agent connection failed: ${err.message}`)));
    sock.on('close', () => this.fail(new DiagError('the agent closed the connection (did the process exit?)')));
  }

  /** Connects to `path`; rejects with a DiagError after `timeoutMs`. */
  static connect(path: string, timeoutMs = 3000): Promise<AgentClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(path);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new DiagError(`the agent at ${path} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      sock.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new DiagError(`cannot connect to the agent at ${path}: ${err.code ?? err.message}`));
      });
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(new AgentClient(sock, path));
      });
    });
  }

  hello(): Promise<HelloResult> {
    return this.request<HelloResult>('hello');
  }

  /**
   * Sends one request. Without an answer within `timeoutMs` (the target's event loop is blocked, say), the
   * connection is dropped and the request fails with a DiagError; 0 waits for ever (the heap snapshot).
   */
  request<T>(
    op: Op,
    params: Omit<Request, 'id' | 'op'> = {},
    onEvent?: (event: string, data: unknown) => void,
    onBinary?: (chunk: Buffer) => boolean,
    timeoutMs = defaultTimeout(op, params),
  ): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    if (this.pending) return Promise.reject(new Error('one agent request at a time'));
    return new Promise<T>((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              this.fail(new DiagError(`the agent did not answer "${op}" within ${Math.round(timeoutMs / 1000)} s (is the process's event loop blocked?)`));
              this.sock.destroy();
            }, timeoutMs)
          : null;
      const done = (): void => {
        if (timer) clearTimeout(timer);
      };
      this.pending = {
        resolve: (v) => {
          done();
          resolve(v as T);
        },
        reject: (e) => {
          done();
          reject(e);
        },
        onEvent,
        onBinary,
      };
      this.sock.write(JSON.stringify({ id: this.nextId++, op, ...params }) + '\n');
    });
  }

  /** Streams the heap snapshot to `onChunk`; return false from it to pause until `resume()`. */
  heap(onChunk: (chunk: Buffer) => boolean): Promise<{ bytes: number }> {
    return this.request<{ bytes: number }>('heap', {}, undefined, onChunk);
  }

  resume(): void {
    this.sock.resume();
  }

  close(): void {
    this.closedError ??= new DiagError('closed');
    this.sock.destroy();
  }

  private fail(err: Error): void {
    this.closedError ??= err;
    const p = this.pending;
    this.pending = null;
    p?.reject(err);
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.binary) {
        if (this.buf.length < 4) return;
        const len = this.buf.readUInt32BE(0);
        if (len === 0) {
          this.binary = false;
          this.buf = this.buf.subarray(4);
          continue;
        }
        if (this.buf.length < 4 + len) return;
        const chunk = this.buf.subarray(4, 4 + len);
        this.buf = this.buf.subarray(4 + len);
        const more = this.pending?.onBinary?.(chunk) ?? true;
        if (!more) this.sock.pause();
        continue;
      }
      const nl = this.buf.indexOf(10);
      if (nl < 0) return;
      const line = this.buf.subarray(0, nl).toString('utf8');
      this.buf = this.buf.subarray(nl + 1);
      let msg: { ok?: boolean; result?: unknown; error?: { code: string; message: string }; event?: string; data?: unknown; binary?: boolean };
      try {
        msg = JSON.parse(line);
      } catch {
        this.fail(new DiagError('the agent sent a malformed line'));
        this.sock.destroy();
        return;
      }
      if (msg.binary) {
        this.binary = true;
        continue;
      }
      if (msg.event !== undefined) {
        this.pending?.onEvent?.(msg.event, msg.data);
        continue;
      }
      const p = this.pending;
      this.pending = null;
      if (!p) continue;
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new DiagError(`the agent refused: ${msg.error?.message ?? 'unknown error'}`));
    }
  }
}
