import fs from 'node:fs';
import path from 'node:path';
import { unsafeDirReason } from './protocol.js';

/** Socket locations are part of the protocol that diag shares (src/consumers/agent/protocol.ts); re-exported for the agent. */
export { agentDir, candidateDirs, removeStaleSockets, socketPath, uid, unsafeDirReason } from './protocol.js';

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
