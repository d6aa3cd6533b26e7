// Child processes of the core benchmark: spawn with IPC, ask and wait for answers, always clean up.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..', '..');

const live = new Set();

/** Ends every child this harness started (by its own handle), e.g. on Ctrl-C or a failure. */
export function killAll() {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  live.clear();
}
process.once('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    killAll();
    process.exit(130);
  });
}

let nextId = 1;

export class Child {
  constructor(script, { env = {}, execArgv = [], timeoutMs = 120_000, name = script } = {}) {
    this.name = name;
    this.stderr = '';
    this.proc = fork(path.join(here, script), [], {
      cwd: root,
      env: { ...process.env, ...env },
      execArgv,
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    live.add(this.proc);
    this.proc.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d).slice(-4000);
    });
    this.waiters = [];
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        live.delete(this.proc);
        const err = new Error(`${this.name} exited (${code ?? signal})${this.stderr ? ':\n' + this.stderr : ''}`);
        for (const w of this.waiters.splice(0)) w.reject(err);
        resolve({ code, signal });
      });
    });
    this.proc.on('message', (msg) => {
      const i = this.waiters.findIndex((w) => w.match(msg));
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(msg);
    });
    // Hard bound on the child's life, whatever happens to the harness logic.
    this.timer = setTimeout(() => this.kill(), timeoutMs);
    this.timer.unref();
  }

  /** Resolves with the next message matching `match` (a type string or a predicate). */
  wait(match, timeoutMs = 60_000) {
    const fn = typeof match === 'string' ? (m) => m.type === match : match;
    return new Promise((resolve, reject) => {
      const w = { match: fn, resolve: undefined, reject: undefined };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`${this.name}: no answer in ${timeoutMs} ms${this.stderr ? ':\n' + this.stderr : ''}`));
      }, timeoutMs);
      w.resolve = (m) => {
        clearTimeout(t);
        if (m.error) reject(new Error(`${this.name}: ${m.error}`));
        else resolve(m);
      };
      w.reject = (e) => {
        clearTimeout(t);
        reject(e);
      };
      this.waiters.push(w);
    });
  }

  /** Sends a request and resolves with its answer. */
  ask(type, extra = {}, timeoutMs = 60_000) {
    const id = nextId++;
    const p = this.wait((m) => m.id === id, timeoutMs);
    this.proc.send({ type, id, ...extra });
    return p;
  }

  send(msg) {
    this.proc.send(msg);
  }

  async kill() {
    clearTimeout(this.timer);
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      try {
        this.proc.kill('SIGTERM');
      } catch {
        /* gone */
      }
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 2000);
      await this.exited;
      clearTimeout(t);
    }
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
