import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');

interface Result {
  id: number;
  findings: Array<{ kind: string; streamId: number; atMs: number }>;
  /** streams() polled every 100 ms after the client left: ms since the close, and whether the stream was listed. */
  polls: Array<{ atMs: number; listed: boolean; clientClosed: boolean | null }>;
  writesAfterClose: number;
}

/**
 * A zombie producer slower than every threshold (issue 20, item 1): a handler whose interval is never cleared
 * keeps writing after its client left, through the built package on a real server. The sweep that finds it must
 * not depend on which consumer restarts it: every write, however late, is seen, and each kind is raised once.
 */
async function zombie(intervalMs: number, runMs: number, danglingAfterMs: number): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'ss-slow-zombie-'));
  const script = join(dir, 'zombie.mjs');
  writeFileSync(
    script,
    `
import http from 'node:http';
import { instrument, onFinding, streams } from ${JSON.stringify(join(root, 'dist/esm/index.js'))};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let closedAt = -1;
let id = -1;
let writesAfterClose = 0;
const findings = [];
onFinding((f) => findings.push({ kind: f.kind, streamId: f.streamId, atMs: Math.round(performance.now() - closedAt) }));
const handler = instrument((req, res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write('data: hello\\n\\n');
  res.on('close', () => { closedAt = performance.now(); });
  // a heartbeat that is never cleared: it writes on after the client left
  setInterval(() => { if (closedAt >= 0) writesAfterClose++; res.write(': beat\\n\\n'); }, ${intervalMs});
}, { route: '/slow-zombie', danglingAfterMs: ${danglingAfterMs}, stallAfterMs: ${danglingAfterMs} });
const server = http.createServer(handler).listen(0, '127.0.0.1', async () => {
  const { port } = server.address();
  await new Promise((resolve) => {
    const req = http.get('http://127.0.0.1:' + port + '/', (res) => res.once('data', () => {
      id = streams()[0].id;
      req.destroy();
      resolve();
    }));
  });
  while (closedAt < 0) await sleep(5);
  const polls = [];
  while (performance.now() - closedAt < ${runMs}) {
    await sleep(100);
    const s = streams().find((x) => x.id === id);
    polls.push({ atMs: Math.round(performance.now() - closedAt), listed: s !== undefined, clientClosed: s === undefined ? null : s.clientClosed });
  }
  console.log(JSON.stringify({ id, findings, polls, writesAfterClose }));
  process.exit(0);
});
`,
  );
  const { stdout } = await run(process.execPath, [script], { timeout: runMs + 20_000 });
  return JSON.parse(stdout) as Result;
}

/** Every kind raised for the stream, once each, and the stream listed in streams() from its zombie finding on. */
function expectFound(r: Result): void {
  const kinds = r.findings.filter((f) => f.streamId === r.id).map((f) => f.kind);
  expect(r.writesAfterClose).toBeGreaterThanOrEqual(3);
  // the contract's kinds for a client gone and a producer writing on, each raised once per stream
  expect(kinds.sort()).toEqual(['dangling_stream', 'zombie_producer']);
  const zombieAt = r.findings.find((f) => f.kind === 'zombie_producer')!.atMs;
  // the producer holds the stream for the whole run: from its finding on, streams() lists it at every poll
  const after = r.polls.filter((p) => p.atMs > zombieAt + 300);
  expect(after.length).toBeGreaterThan(0);
  expect(after.filter((p) => !p.listed)).toEqual([]);
  expect(after.every((p) => p.clientClosed === true)).toBe(true);
}

describe('a zombie producer slower than its thresholds (built package)', () => {
  it('a 1.5 s heartbeat never cleared, danglingAfterMs 500: one zombie_producer, one dangling_stream, listed while held', async () => {
    expectFound(await zombie(1500, 8000, 500));
  }, 40_000);

  it('a producer writing every 3 s with every threshold at 500 ms is still found, and listed while held', async () => {
    expectFound(await zombie(3000, 11_500, 500));
  }, 40_000);
});
