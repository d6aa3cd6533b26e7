import { describe, expect, it } from 'vitest';
import { AsyncLocalStorage, createHook, executionAsyncResource } from 'node:async_hooks';
import { Registry } from 'prom-client';
import { instrument } from '../src/index.js';
import { get, sleep, until } from './helpers/http.js';
import { testScope } from './helpers/scope.js';

/**
 * Where AsyncContextFrame carries the stream (Node 24 and later), trackAsync's hook is made with
 * `trackPromises: false` (src/consumers/detectors/async-tracking.ts), so Node installs no promise hook for it:
 * promises of the whole process run without a JS call at their creation and around each continuation.
 *
 * The observable: while Node's promise hooks are installed, a promise's continuation runs with the promise as the
 * current async resource (the `before` hook enters it); without them, it does not. That is a public API's answer,
 * not a timing.
 *
 * Runs where the option is honoured and AsyncLocalStorage is the carrier: elsewhere (Node 20 and 22, which do not
 * know the option, or Node 24 with --no-async-context-frame) the hook needs promises to carry the stream, and keeps
 * them (test/track-async-carrier.test.ts).
 */

/** Whether this Node honours `trackPromises: false`: a hook made with it sees no promise (it is off again after). */
function honoursTrackPromises(): boolean {
  let promises = 0;
  const probe = createHook({
    init(_id: number, type: string) {
      if (type === 'PROMISE') promises++;
    },
    trackPromises: false,
  } as Parameters<typeof createHook>[0]);
  probe.enable();
  void Promise.resolve();
  probe.disable();
  return promises === 0;
}
const ALS_CARRIES = typeof (AsyncLocalStorage.prototype as { _propagate?: unknown })._propagate !== 'function';
const APPLIES = ALS_CARRIES && honoursTrackPromises();
const WHY = ALS_CARRIES
  ? 'this Node takes no notice of trackPromises: false (Node 20, 22): its hook sees promises and returns at once'
  : 'AsyncLocalStorage runs on async_hooks here (Node 20, 22, --no-async-context-frame): promises carry the stream';

/** Whether Node's promise hooks are installed: a continuation runs with its promise as the current resource. */
const promiseHooksOn = (): Promise<boolean> => Promise.resolve().then(() => executionAsyncResource() instanceof Promise);

const DANGLE = 300;
const { cleanup, serve, collect } = testScope();

describe.skipIf(!APPLIES)(`trackAsync installs no promise hook where AsyncContextFrame carries the stream${APPLIES ? '' : ` (skipped: ${WHY})`}`, () => {
  it('promises run without Node\'s promise hooks, and a timer set after awaits is still the stream\'s', async () => {
    expect(await promiseHooksOn()).toBe(false); // nothing else in this process installed them
    const seen = collect('/promise-hooks');
    let inHandler: boolean | undefined;
    const handler = instrument(async (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: 1\n\n');
      await sleep(5);
      inHandler = await promiseHooksOn();
      await Promise.resolve();
      const t = setInterval(function setAfterAwaits() {}, 1000);
      cleanup.push(() => clearInterval(t));
      res.end();
    }, { registry: new Registry(), route: '/promise-hooks', danglingAfterMs: DANGLE, trackAsync: true });
    const srv = await serve((req, res) => void handler(req, res));
    await get(`${srv.url}/`);
    expect(inHandler).toBe(false);
    expect(await promiseHooksOn()).toBe(false);
    await until(() => seen.some((f) => f.kind === 'dangling_async'), 'dangling_async for the timer set after awaits');
    const f = seen.find((x) => x.kind === 'dangling_async')!;
    expect(f.detail).toMatch(/1 Timeout/);
    expect(f.stack).toMatch(/setAfterAwaits|track-async-promise-hooks\.test\.ts/);
  });
});
