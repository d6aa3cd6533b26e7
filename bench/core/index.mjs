// The core benchmark (issues 2 and 3): runs every scenario, interleaving the variants in short slices
// (or, for heap, whole runs) whose order rotates between cycles, and returns raw figures plus ratios
// taken within a cycle.
import os from 'node:os';
import { createRequire } from 'node:module';
import { root, median } from './harness.mjs';
import * as scenarios from './scenarios.mjs';

const require = createRequire(root + '/package.json');

/** What each variant is; the report prints this. */
export const VARIANT_NAMES = {
  bare: 'bare node:http',
  ours: 'streamscope `instrument()`',
  otel: 'OpenTelemetry peer: `instrumentation-http` + SDK',
  'otel+ours': 'streamscope under the OpenTelemetry peer',
  'ours+trackAsync': 'streamscope, `trackAsync: true`',
  'ours+captureStacks': 'streamscope, `captureStacks: true`',
  'ours+guards': 'streamscope, every guard on (docs/guards.md)',
  'ours+heapSampling': 'streamscope with the agent sampling the heap from start-up (`startAgent({ heapSampling: 524288 })`)',
  'ours+cpuProfiler': 'streamscope with the continuous CPU profiler and its route labels (`startAgent({ cpuProfiler: true })`, @datadog/pprof)',
  'ours+otelMetrics': 'streamscope with an OpenTelemetry `MeterProvider` registered (metrics also as OTel instruments, collected every second)',
};

const ALL = ['bare', 'ours', 'otel', 'otel+ours', 'ours+trackAsync', 'ours+captureStacks', 'ours+otelMetrics'];

function num(name, dflt) {
  const v = process.env[name];
  return v === undefined || v === '' ? dflt : Number(v);
}

export function defaultConfig() {
  const cycles = num('BENCH_CYCLES', 8);
  // BENCH_VARIANTS=bare,ours,ours+guards,ours+heapSampling: a subset, or variants outside the default set
  const picked = process.env.BENCH_VARIANTS ? process.env.BENCH_VARIANTS.split(',') : ALL;
  return {
    flood: { variants: picked, conns: 200, warmupMs: 1500, settleMs: 300, sliceMs: num('BENCH_SLICE_MS', 2000), cycles },
    short: { variants: picked, conns: 50, warmupS: 1, sliceS: num('BENCH_SLICE_S', 3), cycles },
    idle: { variants: ['bare', 'ours', 'otel', 'ours+captureStacks'], conns: num('BENCH_IDLE_CONNS', 10_000), rounds: num('BENCH_IDLE_ROUNDS', 2) },
    sweep: { conns: num('BENCH_IDLE_CONNS', 10_000), danglingMs: 4000 },
    progress: { idle: num('BENCH_PROGRESS_IDLE', 2000), blocked: num('BENCH_PROGRESS_BLOCKED', 50), sweeps: 50 },
  };
}

function rotate(xs, k) {
  const n = k % xs.length;
  return xs.slice(n).concat(xs.slice(0, n));
}

export function machine() {
  const cpus = os.cpus();
  const v = (p) => {
    try {
      return require(p + '/package.json').version;
    } catch {
      return '?';
    }
  };
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    date: new Date().toISOString(),
    loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    versions: {
      'prom-client': v('prom-client'),
      '@opentelemetry/sdk-trace-node': v('@opentelemetry/sdk-trace-node'),
      '@opentelemetry/instrumentation-http': v('@opentelemetry/instrumentation-http'),
      autocannon: v('autocannon'),
    },
  };
}

/** Per-round ratio of `key` (variant / bare of the same round), then median and spread. */
function ratios(runs, variant, key) {
  const rs = [];
  for (const r of runs) {
    const b = r.bare;
    const x = r[variant];
    if (b && x && !b.error && !x.error) rs.push(x[key] / b[key]);
  }
  return rs.length ? { median: median(rs), min: Math.min(...rs), max: Math.max(...rs), n: rs.length } : null;
}

function medianOf(runs, variant, key) {
  const xs = runs.map((r) => r[variant]).filter((x) => x && !x.error).map((x) => x[key]);
  return xs.length ? median(xs) : null;
}

function summarize(runs, variants, keys) {
  const out = {};
  for (const v of variants) {
    out[v] = { errors: runs.map((r) => r[v]?.error).filter(Boolean) };
    for (const k of keys) {
      out[v][k] = medianOf(runs, v, k);
      if (v !== 'bare') out[v][k + 'Ratio'] = ratios(runs, v, k);
    }
  }
  return out;
}

async function rounds(label, cfg, nRounds, fn, log) {
  const runs = [];
  for (let r = 0; r < nRounds; r++) {
    const round = {};
    for (const v of rotate(cfg.variants, r)) {
      const t = Date.now();
      try {
        try {
          round[v] = await fn(v, cfg);
        } catch (err) {
          log(`${label} round ${r + 1}/${nRounds} ${v}: failed once, retrying: ${String(err.message ?? err).split('\n').slice(0, 3).join(' | ')}`);
          round[v] = await fn(v, cfg);
        }
        log(`${label} round ${r + 1}/${nRounds} ${v}: ${brief(round[v])} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
      } catch (err) {
        round[v] = { error: String(err.message ?? err).split('\n').slice(0, 3).join(' | ') };
        log(`${label} round ${r + 1}/${nRounds} ${v}: FAILED ${round[v].error}`);
      }
    }
    runs.push(round);
  }
  return runs;
}

function brief(x) {
  return Object.entries(x)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toPrecision(4)}`)
    .join(' ');
}

export async function runCore({ config = defaultConfig(), log = console.log, only } = {}) {
  const want = (s) => only === undefined || only.includes(s);
  const result = { machine: machine(), config, startedAt: Date.now() };
  scenarios.snapshotDist();
  if (want('flood')) {
    try {
      const runs = await scenarios.flood(config.flood.variants, config.flood, log);
      result.flood = { runs, summary: summarize(runs, config.flood.variants, ['eventsPerS', 'eventsPerCpuS', 'serverCpuUsPerEvent', 'serverUserUsPerEvent', 'serverCpuShare']) };
    } catch (err) {
      result.flood = { error: String(err.message ?? err) };
      log(`(a) flood FAILED: ${result.flood.error}`);
    }
  }
  if (want('short')) {
    try {
      const runs = await scenarios.short(config.short.variants, config.short, log);
      result.short = {
        runs,
        summary: summarize(runs, config.short.variants, ['reqPerS', 'reqPerCpuS', 'serverCpuUsPerReq', 'serverUserUsPerReq', 'serverCpuShare', 'p99ms']),
      };
    } catch (err) {
      result.short = { error: String(err.message ?? err) };
      log(`(b) short FAILED: ${result.short.error}`);
    }
  }
  if (want('idle')) {
    const runs = await rounds('(c) idle', config.idle, config.idle.rounds, (v) => scenarios.idle(v, config.idle), log);
    const summary = summarize(runs, config.idle.variants, ['heapPerStream', 'rssPerStream', 'open']);
    for (const v of config.idle.variants) {
      const extra = runs
        .filter((r) => r.bare && r[v] && !r.bare.error && !r[v].error)
        .map((r) => r[v].heapPerStream - r.bare.heapPerStream);
      summary[v].extraHeapPerStream = extra.length ? { median: median(extra), min: Math.min(...extra), max: Math.max(...extra), n: extra.length } : null;
      summary[v].opened = runs.map((r) => r[v]?.open).filter((x) => x !== undefined);
    }
    result.idle = { runs, summary };
  }
  if (want('sweep')) {
    const t = Date.now();
    try {
      result.sweep = await scenarios.sweepCost(config.sweep);
      log(`sweep: open median ${result.sweep.open.median.toFixed(3)} ms, lingering median ${result.sweep.lingering.median.toFixed(3)} ms (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    } catch (err) {
      result.sweep = { error: String(err.message ?? err).split('\n')[0] };
      log(`sweep: FAILED ${result.sweep.error}`);
    }
  }
  if (want('progress')) {
    const t = Date.now();
    try {
      result.progress = await scenarios.progressCost(config.progress);
      log(`progress: sweep median ${result.progress.walk.median.toFixed(3)} ms idle, ${result.progress.sampling.median.toFixed(3)} ms sampling (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    } catch (err) {
      result.progress = { error: String(err.message ?? err).split('\n')[0] };
      log(`progress: FAILED ${result.progress.error}`);
    }
  }
  result.machine.loadavgAfter = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  result.durationS = (Date.now() - result.startedAt) / 1000;
  return result;
}
