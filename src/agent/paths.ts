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
