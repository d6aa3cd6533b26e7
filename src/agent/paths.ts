import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Where agent sockets live: one per-user directory, mode 0700, one `<pid>.sock` (mode 0600) per process.
 * `STREAMSCOPE_AGENT_DIR` overrides it (both the agent and `diag` read it); otherwise
 * `$XDG_RUNTIME_DIR/streamscope` when set, else `<tmpdir>/streamscope-<uid>`.
 * Shared with the CLI (which bundles this file); it never loads the rest of the library.
 */
export function agentDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.STREAMSCOPE_AGENT_DIR) return path.resolve(env.STREAMSCOPE_AGENT_DIR);
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'streamscope');
  return path.join(os.tmpdir(), `streamscope-${uid()}`);
}

/** Every directory `diag` looks in: the agent may have been started with a different environment. */
export function candidateDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.STREAMSCOPE_AGENT_DIR) return [path.resolve(env.STREAMSCOPE_AGENT_DIR)];
  const dirs = [path.join(os.tmpdir(), `streamscope-${uid()}`), path.join('/tmp', `streamscope-${uid()}`)];
  if (env.XDG_RUNTIME_DIR) dirs.unshift(path.join(env.XDG_RUNTIME_DIR, 'streamscope'));
  return [...new Set(dirs)];
}

export function socketPath(dir: string, pid: number): string {
  return path.join(dir, `${pid}.sock`);
}

export function uid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : -1;
}

/**
 * Returns why `dir` must not be used (another owner, group/world access, a symlink), or null when it is
 * a private directory of this user. Never follows a symlink.
 */
export function unsafeDirReason(dir: string): string | null {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (err) {
    return `cannot read ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  if (st.isSymbolicLink()) return `${dir} is a symbolic link`;
  if (!st.isDirectory()) return `${dir} is not a directory`;
  const me = uid();
  if (me >= 0 && st.uid !== me) return `${dir} belongs to uid ${st.uid}, not ${me}`;
  if ((st.mode & 0o077) !== 0) return `${dir} has mode ${(st.mode & 0o777).toString(8)}, expected 700`;
  return null;
}

/** Creates the private directory (mode 0700) when missing, then checks it. Throws a one-line Error. */
export function ensurePrivateDir(dir: string): void {
  try {
    fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o700 });
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const why = unsafeDirReason(dir);
  if (why !== null) throw new Error(`refusing the agent directory: ${why}`);
}

/**
 * Removes the sockets of processes that are gone from a private agent directory: `<pid>.sock` files that
 * are sockets of this user (never following a link) whose pid no longer exists (`kill(pid, 0)` gives
 * ESRCH). A process killed by a signal cannot remove its own, and the agent adds no signal handler (that
 * would change how the app exits): so the next agent to start, and `diag ls`, clean up. Never throws.
 */
export function removeStaleSockets(dir: string): number {
  let removed = 0;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return 0;
  }
  const me = uid();
  for (const name of names) {
    const m = /^(\d+)\.sock$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pid < 1) continue;
    const file = path.join(dir, name);
    try {
      const st = fs.lstatSync(file);
      if (!st.isSocket() || (me >= 0 && st.uid !== me)) continue;
      try {
        process.kill(pid, 0);
        continue; // alive (or another user's: EPERM)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') continue;
      }
      fs.unlinkSync(file);
      removed++;
    } catch {
      /* raced with its owner or another cleaner */
    }
  }
  return removed;
}
