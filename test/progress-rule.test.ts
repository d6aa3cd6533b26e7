import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DUE_COST_FACTOR,
  MAX_PROC_INTERVAL_MS,
  MAX_STEP_STALL,
  CONTINUOUS_MS,
  Progress,
  SAMPLE_FROM,
  STEP_ALLOWANCE,
  considerForSampling,
  drained,
  dueForSample,
  isStalled,
  onEpisodeEnd,
  startEpisode,
  noProgressMs,
  record,
  sampleCandidates,
  unmeasuredLeadMs,
  samplingStats,
  setOnSampled,
} from '../src/consumers/detectors/progress.js';
import type { StreamState } from '../src/core/stream-state.js';

/**
 * The one "stalled" rule (pure): no progress in the samples for longer than stallAfterMs, or, for a client seen
 * taking bytes in steps, STEP_ALLOWANCE × its longest step interval, capped at MAX_STEP_STALL × stallAfterMs. The
 * span counts from the block (or the last progress), but from at most `unmeasuredLeadMs` (the baseline's normal
 * delay) before the first sample of the episode (the baseline): what the client did before it was not measured.
 */

const STALL = 2000;
const BLOCKED = 1000; // performance.now() when the write blocked

function blocked(): { s: StreamState; p: Progress } {
  const p = new Progress();
  p.episode = BLOCKED;
  // the fields the rule reads; the progress record is in the progress module's slot (StreamState.slot)
  const s = { blockedSince: BLOCKED, config: { stallAfterMs: STALL }, slot: () => p } as unknown as StreamState;
  return { s, p };
}

describe('isStalled', () => {
  it("counts before the baseline at most its normal delay: a tenth of stallAfterMs, a sweep, a read's wait and the read", () => {
    expect(unmeasuredLeadMs(5000, 0)).toBe(750);
    expect(unmeasuredLeadMs(500, 20)).toBe(50 + 250 + (DUE_COST_FACTOR + 1) * 20);
  });

  it('a client never seen taking a byte is stalled just after stallAfterMs, not before', () => {
    const { s, p } = blocked();
    record(p, 100, BLOCKED + SAMPLE_FROM * STALL); // the baseline sample, on time
    record(p, 100, BLOCKED + STALL);
    expect(isStalled(s, 0)).toBe(false);
    expect(noProgressMs(s)).toBe(STALL);
    record(p, 100, BLOCKED + STALL + 1);
    expect(isStalled(s, 0)).toBe(true);
  });

  it('one sample is no evidence, however long after the block it came (issue 20: "0 B/s over the last 0.0 s")', () => {
    const { s, p } = blocked();
    const lead = unmeasuredLeadMs(STALL); // the most the rule counts before the baseline
    record(p, 100, BLOCKED + 3 * STALL); // the baseline came late (a busy read, the reads' spacing)
    expect(isStalled(s, 0)).toBe(false);
    expect(noProgressMs(s)).toBe(0);
    record(p, 100, BLOCKED + 4 * STALL - lead); // (1 − SAMPLE_FROM) × stallAfterMs measured, not 4 × it
    expect(isStalled(s, 0)).toBe(false);
    record(p, 100, BLOCKED + 4 * STALL - lead + 1);
    expect(isStalled(s, 0)).toBe(true);
    expect(noProgressMs(s)).toBe(STALL + 1);
  });

  it('a kernel sample counts as of its issue when flat, and as of its arrival for the baseline and for progress', () => {
    const { s, p } = blocked();
    // the baseline's read was issued at +200 and came back at +900 (a loaded machine): the queue it shows may be
    // of +899, so the span without progress starts there, not at +200
    record(p, 100, BLOCKED + 200, BLOCKED + 900);
    const since = BLOCKED + 900 - unmeasuredLeadMs(STALL);
    record(p, 100, BLOCKED + STALL + 1, BLOCKED + STALL + 5);
    expect(isStalled(s, 0)).toBe(false); // counted from the block, as if the baseline's value were of +200
    record(p, 100, since + STALL);
    expect(isStalled(s, 0)).toBe(false);
    record(p, 100, since + STALL + 1);
    expect(isStalled(s, 0)).toBe(true);
    // progress seen by a read that took 600 ms: the client may have taken the bytes at its end
    const b = blocked();
    record(b.p, 100, BLOCKED + 200);
    record(b.p, 200, BLOCKED + 400, BLOCKED + 1000);
    record(b.p, 200, BLOCKED + 1000 + STALL);
    expect(isStalled(b.s, 0)).toBe(false);
  });

  it("the lead before the baseline is the baseline read's own: reads of another length later do not move the span a claim covers", () => {
    const { s, p } = blocked();
    // the baseline came from a read that took 2 s (a loaded host, a large TCP table), 3 s after the block: the
    // lead it allows reaches back to the block; the next reads are quick (this process's own last read, whatever it was)
    const slowRead = 2000;
    const lead = unmeasuredLeadMs(STALL, slowRead);
    expect(lead).toBeGreaterThan(3000);
    record(p, 100, BLOCKED + 1000, BLOCKED + 3000, slowRead);
    record(p, 100, BLOCKED + 3500, BLOCKED + 3505, 5);
    // no progress from the block (the baseline's lead reaches it) to the last sample: 3.5 s, past stallAfterMs (2 s);
    // counted with a quick read's lead instead, the span would start about 0.7 s before the baseline: 1.2 s, no stall
    expect(noProgressMs(s)).toBe(3500);
    expect(isStalled(s, 0)).toBe(true);
  });

  it('without a sample of this episode there is no evidence, so no stall', () => {
    const { s, p } = blocked();
    expect(isStalled(s, 0)).toBe(false);
    record(p, 0, BLOCKED + 10 * STALL);
    p.episode = BLOCKED - 1; // the samples belong to an earlier blocked episode
    expect(isStalled(s, 0)).toBe(false);
  });

  it('progress restarts the clock: a slow reader taking bytes every stallAfterMs / 2 is never stalled', () => {
    const { s, p } = blocked();
    let delivered = 0;
    for (let t = BLOCKED + 200; t < BLOCKED + 20 * STALL; t += STALL / 4) {
      if ((t - BLOCKED - 200) % (STALL / 2) === 0) delivered += 65536;
      record(p, delivered, t);
      expect(isStalled(s, 0), `at +${t - BLOCKED} ms`).toBe(false);
    }
  });

  it('a client stepping every 2.7 s is given STEP_ALLOWANCE × 2.7 s, capped at MAX_STEP_STALL × stallAfterMs', () => {
    const { s, p } = blocked();
    const gap = 2700;
    let at = BLOCKED + 200;
    record(p, 0, at);
    // two steps 2.7 s apart: the step interval is learnt
    record(p, 300_000, (at += gap));
    record(p, 600_000, (at += gap));
    expect(p.stepGap).toBe(gap);
    const limit = Math.min(STEP_ALLOWANCE * gap, MAX_STEP_STALL * STALL);
    expect(limit).toBeGreaterThan(STALL); // the allowance matters for this client
    // no step for longer than stallAfterMs but within the allowance: still reading
    record(p, 600_000, at + STALL + 1);
    expect(isStalled(s, 0)).toBe(false);
    record(p, 600_000, at + limit);
    expect(isStalled(s, 0)).toBe(false);
    // past the allowance: stalled
    record(p, 600_000, at + limit + 1);
    expect(isStalled(s, 0)).toBe(true);
  });

  it('a very slow stepper never gets more than MAX_STEP_STALL × stallAfterMs', () => {
    const { s, p } = blocked();
    let at = BLOCKED + 200;
    record(p, 0, at);
    record(p, 1, (at += 10 * STALL));
    record(p, 2, (at += 10 * STALL));
    expect(p.stepGap).toBe(10 * STALL);
    record(p, 2, at + MAX_STEP_STALL * STALL);
    expect(isStalled(s, 0)).toBe(false);
    record(p, 2, at + MAX_STEP_STALL * STALL + 1);
    expect(isStalled(s, 0)).toBe(true);
  });
});

describe('the step allowance follows the longest interval between steps', () => {
  it('a receiver whose window updates come in bursts (two 30 ms apart, then a long pause) keeps the long interval', () => {
    const { s, p } = blocked();
    const gap = 2700;
    let at = BLOCKED + 200;
    record(p, 0, at);
    record(p, 300_000, (at += gap));
    record(p, 320_000, (at += 30)); // the second update of the burst
    record(p, 620_000, (at += gap));
    record(p, 640_000, (at += 30));
    expect(p.stepGap).toBe(gap); // the last interval (30 ms) would give the client only stallAfterMs
    record(p, 640_000, at + STALL + 1);
    expect(isStalled(s, 0)).toBe(false);
    record(p, 640_000, at + Math.min(STEP_ALLOWANCE * gap, MAX_STEP_STALL * STALL) + 1);
    expect(isStalled(s, 0)).toBe(true);
  });
});

/**
 * Issue 20 item 4, from a trace on Node 24 (one process, stallAfterMs 500, a client reading 64 KiB every 150 ms):
 * the response's 64 KiB highWaterMark makes each blocked episode last about a second; it ends in a drain and the
 * producer's next write blocks again at once. Within one episode the samples saw at most one step, so the step
 * interval was never learnt, and 533 ms without a step in the second episode was a stall ("0 B/s over the last
 * 0.2 s"). A drain is a step of the blocked stretch: the interval up to it is learnt.
 */
describe('a drain is a step of the blocked stretch', () => {
  const STALL500 = 500;
  function stream(blockedSince: number): { s: StreamState & { blockedSince: number }; p: Progress } {
    const p = new Progress();
    const s = { blockedSince, closedAt: -1, clientClosed: false, config: { stallAfterMs: STALL500 }, slot: () => p } as unknown as StreamState & { blockedSince: number };
    startEpisode(p, s);
    return { s, p };
  }

  it('the trace: a step, a drain 464 ms later, then 533 ms without a step is not a stall; past the learnt allowance it is', () => {
    const { s, p } = stream(117);
    record(p, 194_211, 332, 341); // the baseline
    record(p, 935_139, 582, 586); // a step
    record(p, 935_139, 832, 845);
    drained(p, 1050);
    s.blockedSince = 1050.1; // the next write blocked at once
    startEpisode(p, s);
    record(p, 1_242_339, 1332, 1341); // the new episode's baseline
    record(p, 1_242_339, 1583, 1593);
    expect(isStalled(s, 0), 'between two steps of a reader').toBe(false);
    // the interval up to the drain, as long as it can have been: from the sample before the step (332)
    expect(p.stepGap).toBeCloseTo(1050 - 332, 6);
    const limit = Math.min(STEP_ALLOWANCE * p.stepGap, MAX_STEP_STALL * STALL500);
    record(p, 1_242_339, 1050.1 + limit - 1);
    expect(isStalled(s, 0)).toBe(false);
    record(p, 1_242_339, 1050.1 + limit + 1);
    expect(isStalled(s, 0), 'no step for longer than the learnt allowance').toBe(true);
  });

  it('time the stream spent unblocked is no step interval: an episode that starts later than CONTINUOUS_MS after the drain measures afresh', () => {
    const { s, p } = stream(100);
    record(p, 0, 300);
    record(p, 100_000, 500); // a step
    drained(p, 600);
    expect(p.stepGap).toBe(600 - 300);
    s.blockedSince = 600 + CONTINUOUS_MS + 10_000; // ten seconds of writes that did not block
    startEpisode(p, s);
    record(p, 100_000, s.blockedSince + 50);
    record(p, 200_000, s.blockedSince + 300); // the first step of the new stretch
    expect(p.stepGap, 'not the 10 s between the two stretches').toBe(300);
    // the drain 100 ms after that step: the interval as long as it can have been (from the sample before it)
    drained(p, s.blockedSince + 400);
    expect(p.stepGap).toBe(350);
  });

  it("a close ends an episode too, and is no step of the client's", () => {
    const { s, p } = stream(100);
    record(p, 0, 300);
    record(p, 100_000, 500);
    (s as unknown as { closedAt: number }).closedAt = 5000;
    onEpisodeEnd(s);
    expect(p.drainAt).toBe(-1);
    expect(p.stepGap).toBe(0);
    (s as unknown as { closedAt: number }).closedAt = -1;
    onEpisodeEnd(s);
    expect(p.drainAt).toBeGreaterThan(0);
  });
});

describe('dueForSample (a kernel sample that cannot wait for the reads\' spacing)', () => {
  it('is due once the threshold passed since the last sample, until a sample decides; progress moves the threshold', () => {
    const { s, p } = blocked();
    // no baseline yet: due at once (the span that can show a stall starts with it), not at the reads' spacing
    expect(dueForSample(p, s, BLOCKED + 1)).toBe(true);
    record(p, 100, BLOCKED + 200);
    expect(dueForSample(p, s, BLOCKED + STALL)).toBe(false); // not past the threshold
    expect(dueForSample(p, s, BLOCKED + STALL + 1)).toBe(true);
    record(p, 100, BLOCKED + STALL + 1); // that sample decides: stalled
    expect(isStalled(s, 0)).toBe(true);
    expect(dueForSample(p, s, BLOCKED + STALL + 300)).toBe(false);
    record(p, 5000, BLOCKED + STALL + 400); // the client took bytes: no longer stalled, a new threshold
    expect(isStalled(s, 0)).toBe(false);
    expect(dueForSample(p, s, BLOCKED + 2 * STALL + 400)).toBe(false);
    expect(dueForSample(p, s, BLOCKED + 2 * STALL + 401)).toBe(true);
    p.episode = BLOCKED - 1; // samples of another blocked episode decide nothing
    expect(dueForSample(p, s, BLOCKED + 10 * STALL)).toBe(false);
  });
});

/**
 * When the proc table is read (Linux, a real socket's row): reads are spaced by their cost (up to
 * MAX_PROC_INTERVAL_MS apart), but a stream whose threshold has passed since its last sample is read as soon as
 * DUE_COST_FACTOR × the last read's time allows, and the detector hears of the result when it is in
 * (`onSampled`). Before, the deciding sample waited for the full spacing (up to 750 ms, plus a sweep), and a client
 * that read nothing was found up to 1.1 s after its threshold on a loaded CI machine (the contract says within
 * 1 s). The clock is the caller's `now`: this test moves it.
 */
describe.runIf(process.platform === 'linux')('the kernel samples (proc table reads)', () => {
  const sockets: net.Socket[] = [];
  let server: net.Server | undefined;
  afterAll(() => {
    for (const c of sockets) c.destroy();
    server?.close();
    setOnSampled(null);
  });

  it('a stream whose threshold passed is read before the regular spacing ends; one before its threshold is not', async () => {
    server = net.createServer((c) => sockets.push(c));
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    sockets.push(sock);
    await new Promise((r) => sock.once('connect', r));

    const stall = 500;
    let slot: unknown;
    // the fields sampling reads: a real socket (its inode is in /proc/self/net/tcp), an empty response queue, not
    // an HTTP/2 stream
    const res = { socket: sock, writableLength: 0, destroyed: false };
    const s = { blockedSince: 0, config: { stallAfterMs: stall }, res, h2: null, slot: () => slot, setSlot: (_i: number, v: unknown) => (slot = v) } as unknown as StreamState;
    let arrived: (list: readonly StreamState[]) => void = () => undefined;
    setOnSampled((list) => arrived(list));
    /** One sweep's sampling at `now`: whether it started a read, and the streams that read sampled. */
    const sample = (now: number): { started: boolean; done: Promise<readonly StreamState[]> } => {
      const done = new Promise<readonly StreamState[]>((r) => (arrived = r));
      const before = samplingStats.issued;
      considerForSampling(s, now);
      sampleCandidates(now);
      return { started: samplingStats.issued > before, done };
    };

    // The baseline, 40 ms "ago": the read takes at least that long on this clock, so the next regular read is
    // MAX_PROC_INTERVAL_MS after it (PROC_COST_FACTOR × 40 ms is more).
    const t1 = performance.now() - 40;
    (s as { blockedSince: number }).blockedSince = t1 - stall / 10;
    const msBefore = samplingStats.procMs;
    const first = sample(t1);
    expect(first.started).toBe(true);
    expect(await first.done).toEqual([s]);
    const took = samplingStats.procMs - msBefore;
    const p = slot as Progress;
    expect(p.kernel).toBe(true);
    expect(p.sampledAt).toBe(t1);
    expect(isStalled(s, t1)).toBe(false);

    // Before the threshold, within the spacing: no read.
    expect(sample(t1 + stall / 2).started).toBe(false);

    // Past the threshold (and past DUE_COST_FACTOR × the last read's time), within the regular spacing, the client
    // having taken nothing: a read starts now, and its sample decides the stall when it arrives.
    // (The baseline counts as of its read's arrival, `p.firstAt`: the queue it shows may be of then; the span
    // starts at most unmeasuredLeadMs(stall) before it.)
    expect(p.firstAt).toBeGreaterThanOrEqual(t1 + 40);
    const since = Math.max(s.blockedSince, p.firstAt - unmeasuredLeadMs(stall));
    let t2 = Math.max(since + stall + 1, t1 + DUE_COST_FACTOR * took + 1);
    if (t2 >= t1 + MAX_PROC_INTERVAL_MS) {
      // The baseline read took long (a loaded machine, or a large TCP table on the host: seen at 322 ms in CI with
      // other test files' sockets open): DUE_COST_FACTOR × its time is past the regular spacing, so the rule has
      // nothing to advance. The regular read then decides: just before the spacing ends no read starts; at its end one does.
      expect(sample(t1 + MAX_PROC_INTERVAL_MS - 1).started, `baseline read ${took.toFixed(1)} ms`).toBe(false);
      t2 = Math.max(t1 + MAX_PROC_INTERVAL_MS, since + stall + 1);
    }
    const due = sample(t2);
    expect(due.started).toBe(true);
    expect(await due.done).toEqual([s]);
    expect(p.sampledAt).toBe(t2);
    expect(isStalled(s, t2)).toBe(true);
  });
});
