#!/usr/bin/env node
// The soak: many streams through the demo's routes and the resilient runtime, with faults injected at random
// points, then invariants checked and printed. Loopback only, bounded in count and time.
//
//   node test/soak/run.mjs [--streams 100000] [--max-seconds 3600] [--concurrency 24] [--seed N] [--json FILE]
//                          [--captures agent,inspector|agent|none]
//   npm run soak            (builds, then the full 100,000-stream run)
//
// Runs the BUILT package (dist/): two app instances (test/soak/app.mjs, `node --expose-gc`) on one real
// redis-server (AOF, appendfsync always). Instance A lives throughout (its heap is checked); instance B is
// restarted. Exit 0 when every check passes, 1 when one fails, 2 on a setup failure.
import { spawn, execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

// ---- arguments --------------------------------------------------------------------------------------

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1];
}
const TOTAL = Number(arg('streams', 100_000));
const MAX_SECONDS = Number(arg('max-seconds', 3600));
const CONCURRENCY = Number(arg('concurrency', 24));
const SEED = Number(arg('seed', Date.now() % 1_000_000));
const JSON_OUT = arg('json', null);
// the soak captures via both; the CI version (test/soak.test.ts) passes `agent`: the inspector listens on the
// fixed port 127.0.0.1:9229, which another test's target may hold at the same time
const CAPTURES = arg('captures', 'agent,inspector'); // agent | agent,inspector | none
if (!Number.isInteger(TOTAL) || TOTAL < 100 || !(MAX_SECONDS > 0) || !Number.isInteger(CONCURRENCY) || CONCURRENCY < 1) {
  process.stderr.write('soak: --streams must be an integer >= 100, --max-seconds > 0, --concurrency >= 1\n');
  process.exit(2);
}

// a small seeded PRNG (mulberry32), so a run can be repeated with --seed
let state = SEED >>> 0;
function rnd() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
const between = (a, b) => a + rnd() * (b - a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (line) => process.stdout.write(line + '\n');
const mib = (n) => (n / 1048576).toFixed(2);
const t0 = Date.now();
const elapsed = () => ((Date.now() - t0) / 1000).toFixed(1) + 's';

// ---- ids (the same rules as src/runtime/hub/ids.ts) ---------------------------------------------------------

function split(id) {
  const c = id.indexOf(':');
  const epoch = c < 0 ? null : id.slice(0, c);
  const rest = c < 0 ? id : id.slice(c + 1);
  const d = rest.indexOf('-');
  return { epoch, ms: BigInt(rest.slice(0, d)), seq: BigInt(rest.slice(d + 1)) };
}
function cmp(a, b) {
  const x = split(a);
  const y = split(b);
  if (x.ms !== y.ms) return x.ms < y.ms ? -1 : 1;
  return x.seq === y.seq ? 0 : x.seq < y.seq ? -1 : 1;
}

// ---- processes ----------------------------------------------------------------------------------------

function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
    s.on('error', rej);
  });
}

// AOF with appendfsync always: an acknowledged write survives SIGKILL. On tmpfs (/dev/shm) when there is one, so
// that fsync is cheap; a killed process loses nothing there either (the machine is not what is being crashed).
const redisDir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'streamscope-soak-redis-'));
let redisPort = 0;
let redisChild = null;
function startRedisServer() {
  return new Promise((res, rej) => {
    const child = spawn(
      'redis-server',
      ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', redisDir],
      { cwd: redisDir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    const onData = (c) => {
      out += c;
      if (/Ready to accept connections/.test(out)) {
        child.stdout.off('data', onData);
        child.stdout.resume();
        child.stderr.resume();
        res(child);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', rej);
    child.on('exit', (code) => rej(new Error(`redis-server exited (${code}): ${out.slice(-300)}`)));
  });
}
function exited(child) {
  return new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
}

class App {
  constructor(name) {
    this.name = name;
    this.child = null;
    this.port = 0;
    this.restarts = 0;
    this.alive = false;
  }
  async start() {
    const child = spawn(process.execPath, ['--expose-gc', join(ROOT, 'test/soak/app.mjs')], {
      env: { ...process.env, SOAK_REDIS_URL: `redis://127.0.0.1:${redisPort}`, SOAK_NAME: this.name, STREAMSCOPE_METRICS_PORT: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stderr.on('data', (c) => {
      this.stderr = ((this.stderr ?? '') + c).slice(-4000);
    });
    this.port = await new Promise((res, rej) => {
      let out = '';
      child.stdout.on('data', (c) => {
        out += c;
        const m = /READY (\d+)/.exec(out);
        if (m) res(Number(m[1]));
      });
      child.on('exit', (code, sig) => rej(new Error(`app ${this.name} exited (${code ?? sig}) before READY: ${this.stderr ?? ''}`)));
    });
    this.alive = true;
  }
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }
  async stop() {
    if (!this.child) return;
    this.alive = false;
    const done = exited(this.child);
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await done;
    clearTimeout(t);
  }
  async restart() {
    await this.stop();
    this.restarts++;
    await this.start();
  }
}

// ---- HTTP helpers -------------------------------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
function request(url, { method = 'GET', timeoutMs = 10_000 } = {}) {
  return new Promise((res, rej) => {
    const req = http.request(url, { method, agent }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks).toString() }));
      r.on('error', rej);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout ${url}`)));
    req.on('error', rej);
    req.end();
  });
}

function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m) out.push({ name: m[1], labels: m[2] ?? '', value: Number(m[3]) });
  }
  return out;
}
const total = (samples, name) => samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);

/**
 * One streaming request with a client behaviour. Resolves with what it saw; never rejects.
 * behaviour: 'read' (to the end or until limitMs), 'abort' (after a random time), 'slow' (pauses the socket),
 * 'stuck' (never reads, then gives up).
 */
function stream(url, { headers = {}, behaviour = 'read', limitMs = 2000, sseParse = false } = {}) {
  return new Promise((resolve) => {
    const result = { status: 0, events: [], anchor: null, bytes: 0, error: null, ended: false, headers: {}, hung: null };
    let buf = '';
    let response = null;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(hard);
      resolve(result);
    };
    const req = http.get(url, { agent: false, headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
      response = res;
      result.status = res.statusCode;
      result.headers = res.headers;
      if (behaviour === 'stuck') res.pause();
      if (behaviour === 'slow') {
        const tick = setInterval(() => {
          if (res.isPaused()) res.resume();
          else res.pause();
        }, 20);
        res.on('close', () => clearInterval(tick));
      }
      res.setEncoding('utf8');
      res.on('data', (c) => {
        result.bytes += c.length;
        if (!sseParse) return;
        buf += c;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let id = null;
          let event = 'message';
          let data = null;
          for (const line of frame.split('\n')) {
            if (line.startsWith('id: ')) id = line.slice(4);
            else if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data = data === null ? line.slice(6) : data + '\n' + line.slice(6);
          }
          if (data === null) {
            if (id !== null) result.anchor = id;
          } else result.events.push({ id, event, data });
        }
      });
      res.on('end', () => {
        result.ended = true;
        finish();
      });
      res.on('close', finish);
      res.on('error', finish);
    });
    // the client's limit: it goes away (a paused response is resumed so that its end is seen)
    const timer = setTimeout(() => {
      if (response !== null) {
        response.resume();
        response.destroy();
      }
      req.destroy();
    }, limitMs);
    // a connection that does not end within 10 s of that is reported (never waited on)
    const hard = setTimeout(() => {
      result.hung = `${behaviour} ${url} status ${result.status} bytes ${result.bytes}`;
      finish();
    }, limitMs + 10_000);
    req.on('error', (err) => {
      result.error = err.code ?? err.message;
      finish();
    });
  });
}

// ---- the run ---------------------------------------------------------------------------------------------

const stats = {
  started: 0,
  byRoute: {},
  statuses: {},
  clientErrors: 0,
  hung: 0, // client connections that had not closed 10 s after the client gave up
  publishes: { ok: 0, failed: 0 },
  resumes: { checked: 0, replayedOk: 0, status416: 0, reset: 0, errorEvents: 0, gaps: 0, dups: 0, disorder: 0, unverifiable: 0 },
  faults: [],
  captures: { ok: 0, failed: 0, list: [] }, // list: { via, phase, ms, pauseMs } per capture
  load: [], // the machine's 1-minute load average, every 15 s of the run
};
let phase = 'warm-up';
const failures = [];
const acked = new Map(); // `${store}|${instance}|${channel}` -> [ids]
const sessions = []; // { key, from, ids, status, reset }

const A = new App('A');
const B = new App('B');
let admin = null;
let stopping = false;

async function publishLoop(offset) {
  // publishes to 4 channels of each store on both instances; acknowledged ids are the truth for the checks
  let n = offset;
  while (!stopping) {
    // every combination of instance, store and channel in turn
    const inst = n % 2 ? A : B;
    const store = (n >> 1) % 2 ? 'mem' : 'redis';
    const ch = `ch${(n >> 2) % 4}`;
    n++;
    if (!inst.alive) {
      await sleep(5);
      continue;
    }
    const key = `${store}|${store === 'mem' ? inst.name : '*'}|${ch}`;
    try {
      const r = await request(`${inst.url}/publish/${store}?ch=${ch}&d=${n}`, { method: 'POST', timeoutMs: 5000 });
      if (r.status === 200) {
        const { id } = JSON.parse(r.body);
        if (!acked.has(key)) acked.set(key, []);
        acked.get(key).push(id);
        stats.publishes.ok++;
      } else stats.publishes.failed++;
    } catch {
      stats.publishes.failed++;
    }
    if (n % 4 === 0) await sleep(1);
  }
}

/** A hub client: a first connection (anchored), cut at a random point, then a resume from its last id. */
async function hubSession() {
  const store = rnd() < 0.4 ? 'mem' : 'redis';
  const inst = store === 'mem' ? pick([A, B]) : null;
  const ch = `ch${Math.floor(rnd() * 4)}`;
  const key = `${store}|${store === 'mem' ? inst.name : '*'}|${ch}`;
  const reset = rnd() < 0.5;
  const base = () => (inst ?? pick([A, B])).url;
  let from = null;
  for (let leg = 0; leg < 2; leg++) {
    const headers = from ? { 'Last-Event-ID': from } : {};
    const url = base();
    const ts = Date.now();
    const r = await stream(`${url}/hub/${store}?ch=${ch}${reset ? '&reset=1' : ''}`, {
      headers,
      behaviour: pick(['read', 'read', 'read', 'slow']),
      limitMs: between(200, 1500),
      sseParse: true,
    });
    if (r.hung) {
      stats.hung++;
      failures.push(`client connection did not close: ${r.hung}`);
    }
    stats.started++;
    stats.byRoute[`/hub/${store}`] = (stats.byRoute[`/hub/${store}`] ?? 0) + 1;
    stats.statuses[r.status] = (stats.statuses[r.status] ?? 0) + 1;
    const start = from ?? r.anchor;
    const where = `${url === A.url ? 'A' : 'B'} leg ${leg} ${new Date(ts).toISOString().slice(11, 23)}-${new Date().toISOString().slice(11, 23)}`;
    if (r.status === 200 && start !== null) sessions.push({ key, from: start, where, events: r.events.map((e) => ({ id: e.id, event: e.event })), status: 200 });
    if (r.status === 416) sessions.push({ key, from, events: [], status: 416 });
    const last = r.events.length ? r.events[r.events.length - 1].id : r.anchor;
    if (last === null) return;
    from = last;
    await sleep(between(0, 100));
  }
}

const plain = [
  ['/tokens', 3],
  ['/export', 2],
  ['/firehose', 1],
  ['/leaky', 1],
  ['/throw', 1],
  ['/sse', 3],
  ['/sse?throw=1', 1],
];
const plainWeights = plain.reduce((a, [, w]) => a + w, 0);
function pickPlain() {
  let x = rnd() * plainWeights;
  for (const [p, w] of plain) if ((x -= w) < 0) return p;
  return plain[0][0];
}

async function plainStream() {
  const path = pickPlain();
  const inst = rnd() < 0.7 ? A : B;
  if (!inst.alive) return sleep(5);
  const route = path.split('?')[0];
  const behaviour = pick(['read', 'read', 'abort', 'slow', 'stuck']);
  // endless routes (/sse) are read for a while, the others to their end (bounded by 3 s)
  const limitMs = behaviour === 'read' ? (route === '/sse' ? between(20, 300) : 3000) : behaviour === 'stuck' ? between(50, 600) : between(5, 300);
  stats.started++;
  stats.byRoute[route] = (stats.byRoute[route] ?? 0) + 1;
  const r = await stream(inst.url + path, { behaviour, limitMs });
  if (r.hung) {
    stats.hung++;
    failures.push(`client connection did not close: ${r.hung}`);
  }
  stats.statuses[r.status] = (stats.statuses[r.status] ?? 0) + 1;
  if (r.error && inst.alive && r.status === 0) stats.clientErrors++;
}

let target = TOTAL;
async function worker() {
  while (!stopping && stats.started < target) {
    if (rnd() < 0.2) await hubSession();
    else await plainStream();
  }
}

// ---- faults ---------------------------------------------------------------------------------------------

function diag(args) {
  return new Promise((res) => {
    execFile(process.execPath, [join(ROOT, 'dist/diagnostics/cli.js'), ...args], { timeout: 60_000 }, (err, stdout, stderr) =>
      res({ code: err ? (err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/**
 * `diag capture` of instance A, with A's event-loop delay recorded over it: its max is the longest pause of A's
 * loop while the capture ran (the capture's own, plus what the loaded machine adds).
 */
async function capture(via, out) {
  await request(`${A.url}/loop?reset=window`);
  const tc = Date.now();
  const r = await diag(['capture', String(A.child.pid), '--via', via, '--out', out]);
  const ms = Date.now() - tc;
  const w = JSON.parse((await request(`${A.url}/loop?read=window`)).body);
  stats.captures.list.push({ via, phase, ok: r.code === 0, ms, pauseMs: w.maxMs });
  return r;
}

async function waitRedis() {
  for (let i = 0; i < 200; i++) {
    if ((await admin.ping().catch(() => null)) === 'PONG') return;
    await sleep(50);
  }
  throw new Error('redis did not come back');
}

const faults = {
  'redis frozen (SIGSTOP 1.5-3 s)': async () => {
    redisChild.kill('SIGSTOP');
    await sleep(between(1500, 3000));
    redisChild.kill('SIGCONT');
  },
  'redis killed, restarted with persistence (AOF)': async () => {
    redisChild.kill('SIGKILL');
    await exited(redisChild);
    redisChild = await startRedisServer();
    await waitRedis();
  },
  'redis killed, restarted without persistence': async () => {
    redisChild.kill('SIGKILL');
    await exited(redisChild);
    rmSync(redisDir, { recursive: true, force: true });
    mkdirSync(redisDir, { recursive: true });
    redisChild = await startRedisServer();
    await waitRedis();
  },
  'redis FLUSHALL': async () => {
    await admin.flushall();
  },
  'app instance B restarted': async () => {
    await B.restart();
  },
  'diag capture via agent under load': async () => {
    const out = mkdtempSync(join(tmpdir(), 'streamscope-soak-cap-'));
    rmSync(out, { recursive: true });
    const r = await capture('agent', out);
    if (r.code === 0) stats.captures.ok++;
    else {
      stats.captures.failed++;
      failures.push(`diag capture via agent exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
    }
    rmSync(out, { recursive: true, force: true });
  },
};
if (CAPTURES.includes('inspector')) {
  faults['diag capture via inspector under load'] = async () => {
    const out = mkdtempSync(join(tmpdir(), 'streamscope-soak-cap-'));
    rmSync(out, { recursive: true });
    const r = await capture('inspector', out);
    if (r.code === 0) stats.captures.ok++;
    else {
      stats.captures.failed++;
      failures.push(`diag capture via inspector exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
    }
    rmSync(out, { recursive: true, force: true });
  };
}

async function faultLoop(base) {
  // every fault at least once, in a random order, spread over the run by stream count; then again
  const names = Object.keys(faults);
  const order = [];
  for (let round = 0; round < 2; round++) {
    const r = [...names];
    for (let i = r.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [r[i], r[j]] = [r[j], r[i]];
    }
    order.push(...r);
  }
  for (let k = 0; k < order.length && !stopping; k++) {
    const at = Math.floor(((k + 1) * TOTAL) / (order.length + 1) + between(-0.2, 0.2) * (TOTAL / (order.length + 1)));
    while (!stopping && stats.started < base + at) await sleep(20);
    if (stopping) break;
    const name = order[k];
    const tf = Date.now();
    try {
      await faults[name]();
      stats.faults.push({ name, atStream: stats.started - base, ms: Date.now() - tf });
      log(`  ${elapsed()} fault: ${name} (at stream ${stats.started - base}, ${Date.now() - tf} ms, from ${new Date(tf).toISOString().slice(11, 23)})`);
    } catch (err) {
      failures.push(`fault ${name} failed: ${err.message}`);
      log(`  ${elapsed()} fault FAILED: ${name}: ${err.message}`);
    }
  }
}

// ---- checks -------------------------------------------------------------------------------------------

function checkSessions() {
  for (const ids of acked.values()) ids.sort(cmp);
  const r = stats.resumes;
  for (const s of sessions) {
    r.checked++;
    if (s.status === 416) {
      r.status416++;
      continue;
    }
    let from = s.from;
    let events = s.events;
    if (events.length && events[0].event === 'reset') {
      r.reset++;
      from = events[0].id;
      events = events.slice(1);
    }
    // an `error` event (no id: the store failed during the replay) ends the stream explicitly; the client resumes
    const err = events.findIndex((e) => e.id === null);
    if (err >= 0) {
      r.errorEvents++;
      events = events.slice(0, err);
    }
    const ids = events.map((e) => e.id);
    const epoch = split(from).epoch;
    // once each, in order, of the start's epoch
    let bad = false;
    for (let i = 0; i < ids.length; i++) {
      if (split(ids[i]).epoch !== epoch && from !== '0-0') {
        r.disorder++;
        failures.push(`a stream carried an event of another epoch: from ${from} got ${ids[i]}`);
        bad = true;
        break;
      }
      if (i > 0 && cmp(ids[i], ids[i - 1]) <= 0) {
        if (cmp(ids[i], ids[i - 1]) === 0) r.dups++;
        else r.disorder++;
        failures.push(`out of order or twice: ${ids[i - 1]} then ${ids[i]} (from ${from})`);
        bad = true;
        break;
      }
    }
    if (bad || ids.length === 0) continue;
    // every acknowledged event of that epoch between the start and the last one received was received
    const have = new Set(ids);
    const last = ids[ids.length - 1];
    const log_ = acked.get(s.key) ?? [];
    // the acknowledged ids are sorted: a binary search to the first after `from`, then a walk to `last`
    // (a filter over all of them per connection was quadratic: minutes at 100,000 streams)
    let lo = 0;
    let hi = log_.length;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      if (cmp(log_[m], from) > 0) hi = m;
      else lo = m + 1;
    }
    const missing = [];
    for (let i = lo; i < log_.length && cmp(log_[i], last) <= 0; i++) {
      const id = log_[i];
      if (split(id).epoch === epoch && !have.has(id)) missing.push(id);
    }
    if (missing.length) {
      r.gaps++;
      if (failures.length < 50) {
        const at = ids.findIndex((id) => cmp(id, missing[0]) > 0);
        failures.push(
          `gap: from ${from} to ${last} on ${s.key} (${s.where}) missed ${missing.length} acknowledged events: ${missing.slice(0, 4).join(' ')}; ` +
            `received ${ids.length}, around it ${ids.slice(Math.max(0, at - 2), at + 2).join(' ')}`,
        );
      }
    } else r.replayedOk++;
  }
}

async function scrapeChecks(app, results) {
  // streams that were cut end within a few heartbeats: wait for the active gauge to reach 0
  let samples = [];
  for (let i = 0; i < 150; i++) {
    samples = parseMetrics((await request(`${app.url}/metrics`)).body);
    if (total(samples, 'stream_active_connections') === 0) break;
    await sleep(200);
  }
  const active = total(samples, 'stream_active_connections');
  const started = total(samples, 'stream_started_total');
  const outcomes = total(samples, 'stream_duration_seconds_count');
  results.push([`${app.name}: active gauge 0 (from /metrics)`, active === 0, `stream_active_connections=${active}`]);
  results.push([
    `${app.name}: one outcome per started stream`,
    started === outcomes && (started > 0 || app !== A),
    `stream_started_total=${started} stream_duration_seconds_count=${outcomes}`,
  ]);
  const st = JSON.parse((await request(`${app.url}/stats`)).body);
  results.push([`${app.name}: no unhandled rejection`, st.unhandled.length === 0, st.unhandled.length ? st.unhandled[0] : '0']);
  const internal = total(samples, 'streamscope_internal_errors_total');
  return { started, outcomes, internal };
}

/**
 * The heap of JS objects after GC: heapUsed without V8's code space (machine code and its metadata, which grows
 * as the fault paths that first run after the baseline get compiled; it is not data the app holds).
 */
async function heap(app) {
  const r = JSON.parse((await request(`${app.url}/gc`)).body);
  const code = (r.spaces.code_space ?? 0) + (r.spaces.code_large_object_space ?? 0);
  return { objects: r.heapUsed - code, code, total: r.heapUsed };
}

/** A's memory and resources: heap after GC (objects, as above), RSS, libuv handles/requests, open descriptors. */
async function resources(app, label) {
  const h = await heap(app);
  const r = JSON.parse((await request(`${app.url}/resources`)).body);
  return { label, atStream: stats.started, objects: h.objects, code: h.code, rss: r.rss, handles: r.handles, active: r.active, fds: r.fds, load1: os.loadavg()[0] };
}
const fmtRes = (r) =>
  `${r.label.padEnd(6)} heap objects ${mib(r.objects)} MiB (+ code ${mib(r.code)}), RSS ${mib(r.rss)} MiB, handles ${r.handles} ${JSON.stringify(r.active)}, fds ${r.fds}`;

// ---- main -------------------------------------------------------------------------------------------------

const ownUnhandled = [];
process.on('unhandledRejection', (err) => ownUnhandled.push(String(err)));

async function main() {
  log(`soak: ${TOTAL} streams, concurrency ${CONCURRENCY}, seed ${SEED}, at most ${MAX_SECONDS} s, captures ${CAPTURES}`);
  const cpus = os.cpus();
  const machine = `${cpus.length} x ${cpus[0]?.model ?? '?'}, ${mib(os.totalmem())} MiB, ${os.type()} ${os.release()}, Node ${process.version}`;
  log(`  machine: ${machine}; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  redisPort = await freePort();
  redisChild = await startRedisServer();
  admin = new Redis(`redis://127.0.0.1:${redisPort}`, { maxRetriesPerRequest: null, lazyConnect: false });
  admin.on('error', () => {});
  await Promise.all([A.start(), B.start()]);
  log(`  redis-server :${redisPort}, app A pid ${A.child.pid} :${A.port}, app B pid ${B.child.pid} :${B.port}`);

  const early = setInterval(() => log(`  ${elapsed()} warm-up: ${stats.started} streams, publishes ${JSON.stringify(stats.publishes)}`), 5000);
  // warm-up: fill the memory store rings (500 per channel) and run each route, then the baseline heap
  const pub = Promise.all([0, 5, 10, 15].map(publishLoop));
  // the full mix (every route, outcome and hub path), without faults, so that lazily made state (metric
  // children, caches, bounded rings) exists before the baseline
  // Every fault runs once here too: what a fault path creates once (a reconnecting client's state, a metric
  // child for a new label value, the agent's capture machinery) is then in the baseline, and growth after it is
  // what the many streams and the second and third rounds of faults leave behind.
  const warm = Math.max(300, Math.floor(TOTAL / 10));
  const saved = stats.started;
  let warmFaultsDone = false;
  const warmFaults = (async () => {
    for (const name of Object.keys(faults)) {
      const tf = Date.now();
      try {
        await faults[name]();
        log(`  ${elapsed()} warm-up fault: ${name} (${Date.now() - tf} ms, from ${new Date(tf).toISOString().slice(11, 23)})`);
      } catch (err) {
        failures.push(`fault ${name} failed (warm-up): ${err.message}`);
      }
      await sleep(300);
    }
    warmFaultsDone = true;
  })();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (stats.started - saved < warm || !warmFaultsDone) {
        if (rnd() < 0.2) await hubSession();
        else await plainStream();
      }
    }),
  );
  await warmFaults;
  log(`  ${elapsed()} warm-up streams done`);
  // fill A's memory-store rings (200 per channel) so that the baseline holds them
  await Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 110; i++) {
        const ch = `ch${(w + i) % 4}`;
        const r = await request(`${A.url}/publish/mem?ch=${ch}&d=w${i}`, { method: 'POST' });
        if (r.status === 200) {
          const key = `mem|A|${ch}`;
          if (!acked.has(key)) acked.set(key, []);
          acked.get(key).push(JSON.parse(r.body).id);
        }
      }
    }),
  );
  while ([...acked.entries()].filter(([k]) => k.startsWith('mem|A')).length < 4 || [...acked.entries()].filter(([k]) => k.startsWith('mem|A')).reduce((a, [, v]) => Math.min(a, v.length), Infinity) < 250) {
    if (Date.now() - t0 > 60_000) throw new Error(`warm-up: publishes do not get through (${JSON.stringify(stats.publishes)})`);
    await sleep(50);
  }
  await sleep(500);
  clearInterval(early);
  const heap0 = await heap(A);
  const res0 = await resources(A, 'start');
  const census0 = JSON.parse((await request(`${A.url}/census`, { timeoutMs: 120_000 })).body);
  await request(`${A.url}/loop?reset=run`); // after the census: its heap snapshot stops the loop for a while
  log(`  ${elapsed()} warm-up done (${stats.started} streams); A heap after GC ${mib(heap0.objects)} MiB (+ code ${mib(heap0.code)} MiB)`);

  const deadline = setTimeout(() => {
    failures.push(`time limit: ${MAX_SECONDS} s reached at ${stats.started} streams`);
    stopping = true;
  }, MAX_SECONDS * 1000);
  phase = 'load';
  const progress = setInterval(() => {
    stats.load.push(os.loadavg()[0]);
    log(`  ${elapsed()} ${stats.started} streams, ${stats.publishes.ok} publishes, load ${os.loadavg()[0].toFixed(2)}`);
  }, 15_000);
  const base = stats.started;
  target = base + TOTAL;
  const tLoad = Date.now();
  const fl = faultLoop(base);
  // the middle: A's heap and resources half-way through the load
  let resMid = null;
  const mid = (async () => {
    while (!stopping && stats.started < base + TOTAL / 2) await sleep(200);
    if (stopping) return;
    resMid = await resources(A, 'middle').catch(() => null);
    if (resMid) log(`  ${elapsed()} ${fmtRes(resMid)}`);
  })();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const loadSecondsOnly = (Date.now() - tLoad) / 1000;
  await mid;
  stopping = true;
  clearInterval(progress);
  clearTimeout(deadline);
  await fl;
  await pub;
  redisChild.kill('SIGCONT');
  const loadSeconds = (Date.now() - t0) / 1000;

  // ---- checks
  const results = [];
  results.push([`streams started >= ${TOTAL} (after ${warm} warm-up streams)`, stats.started - warm >= TOTAL, `${stats.started} in ${loadSeconds.toFixed(0)} s`]);
  const ra = await scrapeChecks(A, results);
  const rb = await scrapeChecks(B, results);
  checkSessions();
  const r = stats.resumes;
  results.push([
    'every resuming client got every event once in order, or an explicit reset/416',
    r.gaps === 0 && r.dups === 0 && r.disorder === 0 && r.checked > 0,
    `${r.checked} hub connections: ${r.replayedOk} complete, ${r.status416} x 416, ${r.reset} x reset, ${r.errorEvents} ended by an error event, ${r.gaps} gaps, ${r.dups} duplicates, ${r.disorder} out of order`,
  ]);
  // heap: wait for the last streams' objects to be collectable, then compare
  await sleep(1000);
  const heap1 = await heap(A);
  const res1 = await resources(A, 'end');
  const loopRun = JSON.parse((await request(`${A.url}/loop?read=run`)).body);
  const census1 = JSON.parse((await request(`${A.url}/census`, { timeoutMs: 120_000 })).body);
  // V8's compiled code and its metadata (type "code" in a heap snapshot: machine code, deopt data, bytecode,
  // feedback vectors) grows as paths first run or are re-optimized; it is not data the app holds. The check is on
  // everything else: the self sizes of every other node of a heap snapshot taken after GC.
  const data = (c) => Object.entries(c).reduce((a, [k, [, b]]) => (k.startsWith('code:') ? a : a + b), 0);
  const data0 = data(census0);
  const data1 = data(census1);
  const growth = (data1 - data0) / data0;
  const grew = Object.entries(census1)
    .map(([k, [n, b]]) => [k, n - (census0[k]?.[0] ?? 0), b - (census0[k]?.[1] ?? 0)])
    .sort((x, y) => y[2] - x[2]);
  log('heap census of A, end minus baseline, largest growth outside code (type:name, count, bytes):');
  for (const [k, n, b] of grew.filter(([k]) => !k.startsWith('code:')).slice(0, 8)) log(`  ${k.padEnd(60)} ${String(n).padStart(7)} ${String(b).padStart(9)}`);
  const codeGrowth = grew.filter(([k]) => k.startsWith('code:')).reduce((a, [, , b]) => a + b, 0);
  results.push([
    'A: heap after GC within 5 % of its start',
    growth <= 0.05,
    `objects ${mib(data0)} MiB -> ${mib(data1)} MiB (${(growth * 100).toFixed(1)} %); V8 code and its metadata ${codeGrowth >= 0 ? '+' : ''}${mib(codeGrowth)} MiB, not counted; heapUsed ${mib(heap0.total)} -> ${mib(heap1.total)} MiB`,
  ]);
  // handles and descriptors: at the end (no stream, no publisher) not above the start (warm-up streams just
  // ended, the publishers' keep-alive sockets open); a leaked socket, timer or file per stream would be thousands
  results.push([
    'A: handles and open descriptors at the end not above the start',
    res1.handles <= res0.handles + 8 && (res1.fds === null || res1.fds <= res0.fds + 8),
    `handles ${res0.handles} -> ${res1.handles}, fds ${res0.fds} -> ${res1.fds} (8 allowed for sockets in keep-alive)`,
  ]);
  results.push([
    'every client connection closed (none hung)',
    stats.hung === 0,
    stats.hung ? `${stats.hung} had not closed 10 s after the client gave up; first: ${failures.find((f) => f.startsWith('client connection'))}` : '0 hung',
  ]);
  results.push(['soak driver: no unhandled rejection', ownUnhandled.length === 0, ownUnhandled[0] ?? '0']);
  results.push(['every fault injected without error', failures.filter((f) => f.startsWith('fault') || f.startsWith('diag')).length === 0, stats.faults.map((f) => f.name).join('; ')]);
  const gapFailures = failures.filter((f) => !f.startsWith('fault') && !f.startsWith('diag') && !f.startsWith('time limit'));
  if (failures.some((f) => f.startsWith('time limit'))) results.push(['within the time limit', false, failures.find((f) => f.startsWith('time limit'))]);

  log('');
  log(`routes: ${JSON.stringify(stats.byRoute)}`);
  log(`client-side statuses: ${JSON.stringify(stats.statuses)}; publishes ok ${stats.publishes.ok}, failed ${stats.publishes.failed}`);
  log(`server: A started ${ra.started}, B (since its last restart, ${B.restarts} restarts) started ${rb.started}; internal errors A ${ra.internal} B ${rb.internal}`);
  log(`diag captures: ${stats.captures.ok} ok, ${stats.captures.failed} failed`);
  for (const via of ['agent', 'inspector']) {
    const l = stats.captures.list.filter((c) => c.via === via);
    if (!l.length) continue;
    const pauses = l.map((c) => c.pauseMs);
    log(
      `  via ${via}: ${l.filter((c) => c.ok).length} of ${l.length} ok; capture time ${l.map((c) => (c.ms / 1000).toFixed(1) + ' s').join(', ')}; ` +
        `A's longest event-loop pause during each ${pauses.map((p) => p + ' ms').join(', ')} (max ${Math.max(...pauses)} ms)`,
    );
  }
  log(`A's event-loop delay over the load (10 ms resolution): p99 ${loopRun.p99Ms} ms, max ${loopRun.maxMs} ms`);
  log(`A's resources (heap after GC):`);
  for (const r of [res0, resMid, res1]) if (r) log(`  ${fmtRes(r)} (at stream ${r.atStream}, load ${r.load1.toFixed(2)})`);
  const loads = stats.load.length ? stats.load : [os.loadavg()[0]];
  log(`machine: ${machine}; 1-minute load average during the load: min ${Math.min(...loads).toFixed(2)}, mean ${(loads.reduce((a, x) => a + x, 0) / loads.length).toFixed(2)}, max ${Math.max(...loads).toFixed(2)}`);
  log(`rate: ${stats.started - base} streams in ${loadSecondsOnly.toFixed(0)} s of load = ${((stats.started - base) / loadSecondsOnly).toFixed(1)} streams/s (${(loadSeconds).toFixed(0)} s with the warm-up)`);
  for (const f of gapFailures.slice(0, 10)) log(`  ${f}`);
  let ok = true;
  for (const [name, pass, detail] of results) {
    log(`${pass ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
    if (!pass) ok = false;
  }
  if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ seed: SEED, total: TOTAL, seconds: loadSeconds, loadSeconds: loadSecondsOnly, machine, stats, heap0, heap1, data0, data1, resources: [res0, resMid, res1], loop: loopRun, results }, null, 2));
  log(ok ? `soak passed in ${elapsed()}` : `soak FAILED in ${elapsed()}`);
  return ok;
}

let code = 2;
try {
  code = (await main()) ? 0 : 1;
} catch (err) {
  process.stderr.write(`soak: setup failed: ${err?.stack ?? err}\n`);
  code = 2;
} finally {
  stopping = true;
  admin?.disconnect();
  agent.destroy();
  await Promise.allSettled([A.stop(), B.stop()]);
  if (redisChild) {
    redisChild.kill('SIGCONT');
    redisChild.kill('SIGTERM');
    await exited(redisChild);
  }
  rmSync(redisDir, { recursive: true, force: true });
}
process.exit(code);
