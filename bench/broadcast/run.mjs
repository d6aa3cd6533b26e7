#!/usr/bin/env node
// Broadcast and replay benchmark (issue 6). `npm run build` at the root first, then:
//
//   (cd bench/broadcast && npm ci)         once: better-sse, fastify + @fastify/sse, ws (this folder only)
//   node bench/broadcast/run.mjs            10,000 subscribers, writes its section of docs/benchmarks.md
//   node bench/broadcast/run.mjs --quick    2,000 subscribers, 1 pass, no replay, prints (never writes the doc)
//   BENCH_SUBSCRIBERS=2000 BENCH_IMPLS=bare,streamscope node bench/broadcast/run.mjs --no-doc
//   node bench/broadcast/run.mjs --from-results   re-render the doc section from results.json
//
// Broadcast: one server process per implementation (the ceiling, a bare res.write loop, streamscope's hub
// on the memory store, better-sse's channel, @fastify/sse, a ws broadcast), N subscribers spread over
// BENCH_CLIENT_PROCS client processes (default 2), K events broadcast to all of them, R rounds. Reported:
// events delivered per second (end to end, counted by the clients), events handed to the kernel per second
// (server side), server CPU per delivered event (process.cpuUsage() over the round: the figure that holds
// on a shared machine), the clients' CPU busy share (near 100 % per process = client-bound), and heap per
// subscriber (after GC). `ceiling` writes pre-built bytes straight to the sockets: its delivered/s is the
// most the harness can see, so a row near it would be client-bound.
// Replay: 10,000 events in the store, one client resumes from before the first; time until the
// client has them all, memory store and Redis store (a redis-server started here).
import { fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { replaceSection } from '../core/doc.mjs';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

const root = path.resolve(here, '../..');
const quick = process.argv.includes('--quick');
const N = Number(process.env.BENCH_SUBSCRIBERS ?? (quick ? 2000 : 10000));
const K = Number(process.env.BENCH_EVENTS ?? 20);
const R = Number(process.env.BENCH_ROUNDS ?? 5);
const REPLAY = Number(process.env.BENCH_REPLAY ?? 10000);
const P = Math.max(1, Number(process.env.BENCH_CLIENT_PROCS ?? 2));
const IMPLS = ['ceiling', 'bare', 'streamscope', 'better-sse', 'fastify-sse', 'ws'];
const LABEL = {
  ceiling: 'ceiling: pre-built bytes, one `socket.write` per subscriber',
  bare: 'bare `res.write` loop',
  streamscope: 'streamscope `createHub()` + memoryStore',
  'better-sse': 'better-sse 0.16.1 channel',
  'fastify-sse': '@fastify/sse 0.6.0 (fastify 5.12.8), `reply.sse.send()` loop',
  ws: 'ws 8.23.1, hand-written `send()` loop (WebSocket, not SSE)',
};
const writeDoc = !process.argv.includes('--no-doc') && !quick;

if (!fs.existsSync(path.join(here, 'node_modules', 'better-sse'))) {
  console.error('bench: run `npm ci` in bench/broadcast first (its peers are installed there only)');
  process.exit(1);
}

if (!fs.existsSync(path.join(root, 'dist/esm/index.js'))) {
  console.error('bench: run `npm run build` at the repository root first');
  process.exit(1);
}

function child(script, args, execArgv = []) {
  const c = fork(path.join(here, script), args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const queue = [];
  const waiters = [];
  c.on('exit', (code) => {
    if (code !== 0) {
      console.error(`bench: ${script} ${args[0] ?? ''} exited with ${code}`);
      process.exit(1);
    }
  });
  c.on('message', (m) => {
    const i = waiters.findIndex((w) => w.type === m.type);
    if (i >= 0) waiters.splice(i, 1)[0].resolve(m);
    else queue.push(m);
  });
  return {
    proc: c,
    next(type) {
      const i = queue.findIndex((m) => m.type === type);
      if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0]);
      return new Promise((resolve) => waiters.push({ type, resolve }));
    },
    send: (m) => c.send(m),
    exited: new Promise((r) => c.on('exit', r)),
  };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function broadcastBench(impl) {
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const server = child('server.mjs', [impl], ['--expose-gc', ...prof]);
  const { port } = await server.next('listening');
  server.send({ cmd: 'heap' });
  const before = (await server.next('heap')).heapUsed;
  const mode = impl === 'ws' ? 'ws' : 'sse';
  const per = Array.from({ length: P }, (_, i) => Math.floor(N / P) + (i < N % P ? 1 : 0)).filter((n) => n > 0);
  const procs = per.map((n, i) => child('clients.mjs', [String(port), String(n), '/events', mode, `127.0.0.${2 + i}`]));
  await Promise.all(procs.map((c) => c.next('connected')));
  for (;;) {
    server.send({ cmd: 'count' });
    if ((await server.next('count')).subscribers >= N) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  server.send({ cmd: 'heap' });
  const after = (await server.next('heap')).heapUsed;
  const rounds = [];
  for (let r = 0; r < R + 1; r++) {
    procs.forEach((c, i) => c.send({ cmd: 'expect', more: per[i] * K }));
    await Promise.all(procs.map((c) => c.next('armed')));
    server.send({ cmd: 'broadcast', events: K, base: r * K });
    const [srv, ...cli] = await Promise.all([server.next('broadcast'), ...procs.map((c) => c.next('done'))]);
    const e2eMs = Math.max(...cli.map((c) => c.ms));
    // the clients' CPU over the round, as a share of what the client processes could have had
    const clientBusy = cli.reduce((a, c) => a + c.cpuUs, 0) / 1000 / (e2eMs * procs.length);
    if (r > 0) rounds.push({ e2eMs, flushedMs: srv.flushedMs, serverCpuUs: srv.cpuUs, clientBusy, maxTurnMs: srv.maxTurnMs, maxTurnCpuMs: srv.maxTurnCpuMs, fanWrites: srv.fanWrites }); // round 0 warms up
  }
  for (const c of procs) c.send({ cmd: 'exit' });
  server.send({ cmd: 'exit' });
  await Promise.all([...procs.map((c) => c.exited), server.exited]);
  const e2e = median(rounds.map((x) => x.e2eMs));
  const flushed = median(rounds.map((x) => x.flushedMs));
  return {
    impl,
    subscribers: N,
    events: K,
    rounds: R,
    clientProcs: procs.length,
    deliveredPerSec: Math.round((N * K) / (e2e / 1000)),
    handedOffPerSec: Math.round((N * K) / (flushed / 1000)),
    // server CPU (user + system) per delivered event, ns: the least disturbed figure on a shared machine
    serverCpuNsPerEvent: Math.round((median(rounds.map((x) => x.serverCpuUs)) * 1000) / (N * K)),
    clientBusy: Math.round(median(rounds.map((x) => x.clientBusy)) * 100) / 100,
    heapPerSubscriberBytes: Math.round((after - before) / N),
    // the longest event-loop turn of a round (median over the rounds): how long the server held its loop at once
    maxTurnMs: Math.round(median(rounds.map((x) => x.maxTurnMs ?? NaN)) * 10) / 10,
    // the CPU time of the turn that used the most (median of the rounds): the hold without what other work took
    maxTurnCpuMs: Math.round(median(rounds.map((x) => x.maxTurnCpuMs ?? NaN)) * 100) / 100,
    // streamscope: events carried per socket write by its fan-out (N × K over the writes it made), else absent
    ...(rounds[0]?.fanWrites > 0 ? { eventsPerWrite: Math.round(((N * K) / median(rounds.map((x) => x.fanWrites))) * 10) / 10 } : {}),
  };
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function startRedis() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-redis-'));
  const port = await freePort();
  const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise((resolve, reject) => {
    let out = '';
    p.stdout.on('data', (c) => {
      out += c;
      if (out.includes('Ready to accept connections')) resolve();
    });
    p.on('exit', () => reject(new Error('redis-server exited: ' + out)));
  });
  p.stdout.resume();
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () =>
      new Promise((r) => {
        p.removeAllListeners('exit');
        p.on('exit', () => {
          fs.rmSync(dir, { recursive: true, force: true });
          r();
        });
        p.kill('SIGTERM');
      }),
  };
}

function resumeOnce(port, lastEventId, expect) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let n = 0;
    let carry = '';
    const req = http.get({ host: '127.0.0.1', port, path: '/events', agent: false, headers: { 'Last-Event-ID': lastEventId } }, (res) => {
      res.setEncoding('latin1');
      res.on('data', (c) => {
        const text = carry + c;
        let i = text.indexOf('BCAST');
        while (i >= 0) {
          n++;
          i = text.indexOf('BCAST', i + 5);
        }
        carry = text.slice(-4);
        if (n >= expect) {
          const ms = performance.now() - t0;
          req.destroy();
          resolve(ms);
        }
      });
    });
    req.on('error', (e) => (n >= expect ? undefined : reject(e)));
  });
}

async function replayBench(kind, redisUrl) {
  const server = child('server.mjs', [`replay-${kind}`, redisUrl ?? ''], ['--expose-gc']);
  const { port } = await server.next('listening');
  server.send({ cmd: 'heap' });
  const before = (await server.next('heap')).heapUsed;
  server.send({ cmd: 'fill', events: REPLAY, size: 64 });
  const filled = await server.next('filled');
  const times = [];
  await resumeOnce(port, '0-0', REPLAY); // warm-up
  for (let r = 0; r < R; r++) times.push(await resumeOnce(port, '0-0', REPLAY));
  server.send({ cmd: 'exit' });
  await server.exited;
  const ms = median(times);
  return {
    store: kind,
    events: REPLAY,
    replayMs: Math.round(ms * 10) / 10,
    eventsPerSec: Math.round(REPLAY / (ms / 1000)),
    storeHeapPerEventBytes: kind === 'memory' ? Math.round((filled.heapUsed - before) / REPLAY) : null,
  };
}

const fromResults = process.argv.includes('--from-results');
let results;
if (fromResults) {
  results = JSON.parse(fs.readFileSync(path.join(here, 'results.json'), 'utf8'));
} else {
  results = { date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, subscribers: N, events: K, rounds: R, loadavg: { before: os.loadavg() } };
  try {
    results.commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    /* not a checkout */
  }
  // The machine may be shared: implementations run in interleaved passes (order reversed every other
  // pass) and each keeps its best pass, so that a burst of someone else's load does not pick the winner.
  const PASSES = Number(process.env.BENCH_PASSES ?? (quick ? 1 : 3));
  results.passes = PASSES;
  results.clientProcs = P;
  const impls = (process.env.BENCH_IMPLS ?? IMPLS.join(',')).split(',');
  const runs = Object.fromEntries(impls.map((i) => [i, []]));
  for (let p = 0; p < PASSES; p++) {
    for (const impl of p % 2 ? [...impls].reverse() : impls) {
      const r = await broadcastBench(impl);
      console.log(JSON.stringify({ pass: p, ...r }));
      runs[impl].push(r);
    }
  }
  results.broadcast = impls.map((impl) => {
    const rs = runs[impl];
    const best = rs.reduce((a, b) => (b.deliveredPerSec > a.deliveredPerSec ? b : a));
    return {
      ...best,
      handedOffPerSec: Math.max(...rs.map((r) => r.handedOffPerSec)),
      serverCpuNsPerEvent: Math.min(...rs.map((r) => r.serverCpuNsPerEvent)),
      heapPerSubscriberBytes: Math.round(median(rs.map((r) => r.heapPerSubscriberBytes))),
      passes: rs.map((r) => r.deliveredPerSec),
      cpuPasses: rs.map((r) => r.serverCpuNsPerEvent),
    };
  });
  if (!quick) {
    const redis = await startRedis();
    try {
      results.replay = [await replayBench('memory'), await replayBench('redis', redis.url)];
      for (const r of results.replay) console.log(JSON.stringify(r));
    } finally {
      await redis.stop();
    }
  }
  results.loadavg.after = os.loadavg();
  const out = quick ? path.join(os.tmpdir(), 'streamscope-bench-broadcast.json') : path.join(here, 'results.json');
  fs.writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
  console.log(`raw results: ${out}`);

}
const PASSES_ = results.passes;
const by = Object.fromEntries(results.broadcast.map((r) => [r.impl, r]));
const fmt = (n) => n.toLocaleString('en-US');
const ratio = (a, b) => (a / b).toFixed(2);
const ss = by.streamscope;
// `x` ratios: streamscope's figure over another row's (delivered/s, CPU per event inverted, heap)
const vs = (name) => {
  const o = by[name];
  if (ss === undefined || o === undefined) return null;
  return {
    delivered: ratio(ss.deliveredPerSec, o.deliveredPerSec),
    cpu: ratio(o.serverCpuNsPerEvent, ss.serverCpuNsPerEvent),
    heap: ratio(ss.heapPerSubscriberBytes, o.heapPerSubscriberBytes),
  };
};
const ratioLines = ['better-sse', 'bare', 'ceiling', 'fastify-sse', 'ws']
  .map((name) => [name, vs(name)])
  .filter(([, v]) => v !== null)
  .map(([name, v]) => `| streamscope / ${name} | ${v.delivered}× | ${v.cpu}× | ${v.heap}× |`);
const ceiling = by.ceiling;
/** Whether any row may have been set by the clients rather than by its server. */
function clientBound() {
  const rows = results.broadcast.filter((r) => typeof r.clientBusy === 'number');
  if (rows.length === 0) return '';
  const top = rows.reduce((a, r) => (r.clientBusy > a.clientBusy ? r : a));
  const pct = Math.round(top.clientBusy * 100);
  return top.clientBusy < 0.8
    ? `No row is client-bound: the client processes were at most ${pct} % busy (${top.impl}); where a row's delivered/s is below another's, its server (or the machine's other load) set the pace.`
    : `The clients were ${pct} % busy on the ${top.impl} row: that row may be client-bound (more client processes: BENCH_CLIENT_PROCS).`;
}

/** Issue 19's targets, each against this run's figures: met, or missed by how much. */
function targetLines() {
  const b = by['better-sse'];
  if (ss === undefined || b === undefined || by.bare === undefined) return '';
  const line = (what, value, target, more) => {
    if (!Number.isFinite(value)) return `- ${what}: not measured in this run`;
    const ok = more ? value >= target : value <= target;
    const by_ = more ? (1 - value / target) * 100 : (value / target - 1) * 100;
    return `- ${what}: ${value.toFixed(2)}× (target ${more ? '>=' : '<='} ${target}×): ${ok ? 'met' : `missed by ${by_.toFixed(0)} %`}`;
  };
  const out = [
    'Targets (issue 19), from this run:',
    '',
    line('delivered/s, streamscope / better-sse', ss.deliveredPerSec / b.deliveredPerSec, 2, true),
    line('events per server CPU-second, streamscope / better-sse', b.serverCpuNsPerEvent / ss.serverCpuNsPerEvent, 2, true),
    line('delivered/s, streamscope / bare', ss.deliveredPerSec / by.bare.deliveredPerSec, 1, true),
    line('events per server CPU-second, streamscope / bare', by.bare.serverCpuNsPerEvent / ss.serverCpuNsPerEvent, 1, true),
    line('heap per subscriber, streamscope / better-sse', ss.heapPerSubscriberBytes / b.heapPerSubscriberBytes, 0.5, false),
  ];
  if (ceiling !== undefined) {
    out.push(
      `- the ceiling (one \`socket.write\` of pre-built bytes per subscriber and event) is ${(b.serverCpuNsPerEvent / ceiling.serverCpuNsPerEvent).toFixed(2)}× better-sse's events per server CPU-second; streamscope is at ${(ceiling.serverCpuNsPerEvent / ss.serverCpuNsPerEvent).toFixed(2)}× the ceiling's events per server CPU-second and ${(ss.deliveredPerSec / ceiling.deliveredPerSec).toFixed(2)}× its delivered/s: the events published while its walk goes over the subscribers leave in one write per subscriber${ss.eventsPerWrite ? ` (${ss.eventsPerWrite} events per write in this run)` : ''}, so it makes fewer writes than one per subscriber and event, which is the most a server that writes each event on its own can save.`,
    );
  }
  return out.join('\n');
}
const replayBlock =
  results.replay === undefined
    ? ''
    : `
Replay of ${fmt(results.replay[0].events)} missed events on resume (one client, \`Last-Event-ID: 0-0\`, 64-byte payloads, median of ${results.rounds}):

| store | replay time | events/s | store heap/event |
| --- | ---: | ---: | ---: |
| memoryStore | ${results.replay[0].replayMs} ms | ${fmt(results.replay[0].eventsPerSec)} | ${results.replay[0].storeHeapPerEventBytes ?? '–'} B |
| redisStore (local redis-server, XRANGE pages of 1,000) | ${results.replay[1].replayMs} ms | ${fmt(results.replay[1].eventsPerSec)} | in Redis |

Ratio: Redis replay takes ${ratio(results.replay[1].replayMs, results.replay[0].replayMs)}× the memory store's time. better-sse keeps no history, so it has no replay to compare.`;
const body = `## Broadcast and replay

Generated by \`node bench/broadcast/run.mjs\` (issues 6 and 19) on ${results.date.slice(0, 10)}, commit ${results.commit ?? '?'}, Node ${results.node}, ${results.cpus} × ${results.cpuModel}.
One server process per implementation, ${fmt(results.subscribers)} subscribers spread over ${results.clientProcs ?? 1} client processes on the same machine,
${results.events} events broadcast to all of them per round (one event per event-loop turn), median of ${results.rounds} rounds after a warm-up round;
the implementations run in ${PASSES_} interleaved passes and each row shows its best pass (heap: median of the passes), because the machine
may be shared (the delivered/s and CPU of every pass are in \`results.json\`).${results.loadavg ? `
Load average (1, 5, 15 min) before the run: ${results.loadavg.before.map((x) => x.toFixed(2)).join(' ')}; after: ${results.loadavg.after.map((x) => x.toFixed(2)).join(' ')}${Math.max(results.loadavg.before[0], results.loadavg.after[0]) > results.cpus ? ` (${results.cpus} cores: above ${results.cpus}, other work took part of the machine, and the rows that hold the loop for a whole fan-out lose the most wall time to it)` : ''}.` : ''}
*Delivered/s* is counted by the clients (end to end); *handed off/s* is the server's time until every event
was written and every socket's user-space buffer was empty; *server CPU/event* is the server process's CPU time
(user + system) over the round divided by the events delivered — the figure least moved by other load;
*clients busy* is the client processes' CPU over the round as a share of their wall time (near 100 % means the
clients, not the server, set the pace); *heap/subscriber* is the server's heap growth after GC divided by the
subscribers (it includes Node's own socket, request and response objects, which the bare row shows alone).
*longest turn* is the longest event-loop turn of a round as the server saw it (from one of its own immediates to the
next, median of the rounds): how long it held its loop at once. The *ceiling* row is no implementation: it writes one
pre-built chunk straight to every socket per event, the least a server that writes each event on its own can do
(it is what this harness receives from such a server${ceiling ? `: ${fmt(ceiling.deliveredPerSec)}/s, clients ${Math.round(ceiling.clientBusy * 100)} % busy` : ''}). streamscope's hub is not
bound by it: its fan-out walks the subscribers in slices of about 2 ms, a turn each, and the events published
meanwhile reach a subscriber together, in one write (docs/hub.md, "The walk"). The clients' busy share says
whether the harness, not the server, set a row's pace.
${clientBound()}

| implementation | delivered/s | handed off/s | server CPU/event | clients busy | heap/subscriber | longest turn |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
${results.broadcast.map((r) => `| ${LABEL[r.impl] ?? r.impl} | ${fmt(r.deliveredPerSec)} | ${fmt(r.handedOffPerSec)} | ${r.serverCpuNsPerEvent === undefined ? '–' : fmt(r.serverCpuNsPerEvent) + ' ns'} | ${r.clientBusy === undefined ? '–' : Math.round(r.clientBusy * 100) + ' %'} | ${fmt(r.heapPerSubscriberBytes)} B | ${Number.isFinite(r.maxTurnMs) ? r.maxTurnMs + ' ms' : '–'} |`).join('\n')}

| ratio | delivered/s | events per server CPU-second | heap/subscriber |
| --- | ---: | ---: | ---: |
${ratioLines.join('\n')}

${targetLines()}

streamscope's numbers include its tracker (metrics, span hooks, detectors) on every stream.${ss && by.bare ? `
Heap per subscriber above bare: streamscope ${fmt(ss.heapPerSubscriberBytes - by.bare.heapPerSubscriberBytes)} B${by['better-sse'] ? `, better-sse ${fmt(by['better-sse'].heapPerSubscriberBytes - by.bare.heapPerSubscriberBytes)} B` : ''}.` : ''}
${replayBlock}
Raw numbers: \`bench/broadcast/results.json\`.`;

if (writeDoc) {
  const file = path.join(root, 'docs/benchmarks.md');
  const doc = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  fs.writeFileSync(file, replaceSection(doc, 'broadcast', body));
  console.log('wrote the "Broadcast and replay" section of docs/benchmarks.md');
} else {
  console.log(body);
}
