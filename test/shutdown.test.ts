import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/child.js';

const run = promisify(execFile);

/** Runs test/fixtures/shutdown-app.mjs (the built package, dist/, by its name) and returns its report. */
/** @datadog/pprof, when the agent preloads it, adds its own 'exit' listener as it loads (a module stays loaded): off, unless asked. */
async function scenario(mode: 'full' | 'early' | 'observe' | 'dual' | 'profilers', env: NodeJS.ProcessEnv = { STREAMSCOPE_PPROF: 'off' }): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, ['test/fixtures/shutdown-app.mjs', mode], {
    cwd: ROOT,
    env: { ...process.env, STREAMSCOPE_AGENT_DIR: undefined, ...env },
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop() as string) as Record<string, unknown>;
}

interface Totals {
  started: number;
  active: number;
  closed: number;
}

describe('shutdown(): an off switch that leaves nothing behind', () => {
  it('loads, serves (instrument, observeAll, HTTP/2, the agent), shuts down: the process is as before, the stream in flight finishes, metrics stay consistent', async () => {
    const r = await scenario('full');
    // while on, streamscope had wrapped node:http2's factories (and the ESM view of them) and the server's emit
    expect(r.changedWhileOn).toEqual(['http2.createServer', 'http2.createSecureServer', 'http2 (ESM view).createServer', 'http2 (ESM view).createSecureServer']);
    expect(r.h2ServerHadOwnEmit).toBe(true);
    expect(r.channelSubscribedWhileOn).toBe(true);
    expect(r.agentSocketExisted).toBe(true);

    // at once (synchronously) and after: every patched function is the original again (===)
    expect(r.changedRightAfterShutdown).toEqual([]);
    expect(r.changedAfterShutdown).toEqual([]);
    expect(r.h2ServerHasOwnEmit).toBe(false);
    expect(r.channelSubscribed).toBe(false);
    expect(r.agentSocketExists).toBe(false);
    expect(r.diagClientClosed).toBe(true); // a connected `diag` client does not hold the agent open
    // streamscope never touches a socket (a server's cut is read from the socket when the response closes): nothing to give back
    expect(r.socketsWithOwnDestroy).toBe(0);
    expect(r.secondShutdown).toBe(true);

    // the stream in flight at shutdown finishes unharmed, with its full body
    const body = r.inflightBody as string;
    expect(body.startsWith('data: first\n\n')).toBe(true);
    expect(body.endsWith('data: last\n\n')).toBe(true);
    expect(body.split('\n\n').length - 1).toBe(52);
    // ...and then its socket is let go too: no streamscope property left on any socket
    expect(r.socketsWithOwnDestroyAtEnd).toBe(0);
    expect(r.socketSymbols).toEqual([]);

    // metrics: the stream open at shutdown is counted to its close; a handler wrapped before shutdown() passes through untracked
    const before = r.totalsBefore as Totals;
    expect(before).toEqual({ started: 5, active: 1, closed: 4 });
    expect(r.passThroughBody).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\n');
    expect(r.totalsAfterInflight).toEqual({ started: 5, active: 0, closed: 5 });

    // instrument() after shutdown() tracks again, into the same registry (no duplicate-registration error)
    expect(r.againBody).toBe('data: 0\n\ndata: 1\n\n');
    expect(r.totalsAgain).toEqual({ started: 6, active: 0, closed: 6 });

    // no handle, timer or listener of streamscope's is left, unref'd ones included (an async_hooks census of what its
    // code created: the census sees the agent's socket server and the sweep timer while on, none of them right after)
    expect(r.oursWhileOn).toEqual(expect.arrayContaining(['PIPESERVERWRAP', 'Timeout']));
    expect(r.oursRightAfterShutdown).toEqual([]);
    expect((r.left as Array<{ ours: boolean }>).filter((x) => x.ours)).toEqual([]);
    expect(r.activeAfter).toEqual((r.activeBefore as string[]).filter((t) => t !== 'CloseReq'));
    expect(r.listenersAfter).toEqual(r.listenersBefore);
    expect(r.newExitListeners).toEqual([]);
  }, 90_000);

  it("observeAll()'s unsubscribe, for its last reference, undoes what observeAll() installed", async () => {
    const r = await scenario('observe');
    const wrapped = ['http2.createServer', 'http2.createSecureServer', 'http2 (ESM view).createServer', 'http2 (ESM view).createSecureServer'];
    expect(r.changedWhileObserved).toEqual(wrapped);
    expect(r.changedAfterFirstUnsubscribe).toEqual(wrapped);
    expect(r.subscribedAfterFirstUnsubscribe).toBe(true);
    expect(r.changedAfterLastUnsubscribe).toEqual([]);
    expect(r.subscribedAfterLastUnsubscribe).toBe(false);
    expect(r.h2ServerHasOwnEmit).toBe(false);
    expect(r.changedObservedAgain).toEqual(wrapped);
    expect(r.changedAtEnd).toEqual([]);
  }, 60_000);

  it("one copy's shutdown() undoes what the other copy installed (CJS installs, ESM shuts down)", async () => {
    const r = await scenario('dual');
    expect(r.changedByCjs).toEqual(['http2.createServer', 'http2.createSecureServer', 'http2 (ESM view).createServer', 'http2 (ESM view).createSecureServer']);
    expect(r.changedAfterEsmShutdown).toEqual([]);
    expect(r.subscribed).toBe(false);
    expect(r.agentSocketExists).toBe(false);
  }, 60_000);

  it("stops the agent's always-on profilers (continuous CPU with its restart timer and route labels, heap sampling)", async () => {
    const r = await scenario('profilers', {});
    expect(r.oursWhileOn).toEqual(expect.arrayContaining(['PIPESERVERWRAP', 'Timeout']));
    expect(r.oursAfterShutdown).toEqual([]);
    expect(r.cpuProfilerRunning).toBe(false);
  }, 60_000);

  it('is safe and idempotent before anything was tracked, and streamscope starts clean after it', async () => {
    const r = await scenario('early');
    expect(r.changedAfterEarlyShutdown).toEqual([]);
    for (let i = 0; i < 3; i++) expect(r[`body${i}`]).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\n');
    expect(r.totals).toEqual({ started: 3, active: 0, closed: 3 });
    expect(r.totalsAfterSecondShutdown).toEqual({ started: 3, active: 0, closed: 3 });
  }, 60_000);
});
