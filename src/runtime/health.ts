import type { IncomingMessage, ServerResponse } from 'node:http';
import { getTracker } from '../core/tracker.js';
import { runtimeStats } from './limits/stats.js';
import { heapNow, Shedder, type ShedOptions } from './limits/shed.js';
import { invalidOption } from '../errors.js';
import { isStalled } from '../consumers/detectors/progress.js';

export interface HealthOptions {
  /** The same thresholds as the streams' `shed` option: above them the status is `overloaded` (HTTP 503). */
  shed?: ShedOptions;
  /** Share of streams closed by their client over the last minute above which status is `degraded` (default 0.5). */
  maxClientAbortRate?: number;
  /** Streams that must have closed in the last minute before the abort rate can degrade the status (default 20). */
  minStreamsForRate?: number;
}

export interface StreamHealth {
  status: 'ok' | 'degraded' | 'overloaded';
  streams?: {
    active: number;
    stalled: number;
    dangling: number;
    lastMinute: { closed: number; clientAborted: number; clientAbortRate: number; rejected: { rate_limited: number; overloaded: number } };
    heapUsedBytes: number;
  };
}

const tracker = getTracker();

/** Computes the stream health report (what `/healthz?probe=stream` answers). */
export function streamHealth(options: HealthOptions = {}, detail = true): StreamHealth {
  const stats = runtimeStats();
  const shedder = options.shed === undefined ? null : new Shedder(options.shed);
  const now = performance.now();
  const active = tracker.open.size;
  // only a stream in a blocked episode can be stalled: the blocked list, not every open stream
  let stalled = 0;
  tracker.blocked.each((s) => {
    if (s.closedAt < 0 && isStalled(s, now)) stalled++;
  });
  let dangling = 0;
  for (const s of tracker.lingering.values()) if (s.findings.includes('dangling_stream') || s.findings.includes('zombie_producer')) dangling++;
  const closed = stats.closed.total();
  const aborted = stats.clientAborted.total();
  const rate = closed === 0 ? 0 : aborted / closed;
  const rejected = { rate_limited: stats.rateLimited.total(), overloaded: stats.overloaded.total() };
  const maxRate = options.maxClientAbortRate ?? 0.5;
  let status: StreamHealth['status'] = 'ok';
  if (shedder !== null) {
    shedder.active = active;
    if (shedder.overloaded()) status = 'overloaded';
  }
  const enough = closed >= (options.minStreamsForRate ?? 20);
  if (status === 'ok' && (stalled > 0 || dangling > 0 || (enough && rate > maxRate))) status = 'degraded';
  const out: StreamHealth = { status };
  if (detail) {
    out.streams = {
      active,
      stalled,
      dangling,
      lastMinute: { closed, clientAborted: aborted, clientAbortRate: Math.round(rate * 1000) / 1000, rejected },
      heapUsedBytes: heapNow().used,
    };
  }
  return out;
}

/**
 * A `(req, res)` handler for `/healthz`: `{ status }`, and with `?probe=stream` the stream report
 * (active, stalled, dangling, rejections and client-abort rate over the last minute). HTTP 200 for
 * `ok` and `degraded`, 503 for `overloaded`, so a load balancer stops sending new streams.
 */
export function healthHandler(options: HealthOptions = {}): (req: IncomingMessage, res: ServerResponse) => void {
  if (options === null || typeof options !== 'object') throw invalidOption('options', 'an object', options);
  if (options.shed !== undefined) new Shedder(options.shed); // validate now
  const r = options.maxClientAbortRate;
  if (r !== undefined && (typeof r !== 'number' || !(r >= 0 && r <= 1))) throw invalidOption('maxClientAbortRate', 'a number in 0..1', r);
  runtimeStats();
  return function health(req, res) {
    let body: string;
    let code = 200;
    try {
      const url = req.url ?? '';
      const probe = /[?&]probe=stream(?:&|$)/.test(url);
      const h = streamHealth(options, probe);
      if (h.status === 'overloaded') code = 503;
      body = JSON.stringify(h);
    } catch (err) {
      tracker.fault('health', err);
      body = JSON.stringify({ status: 'ok' });
    }
    try {
      res.writeHead(code, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    } catch (err) {
      tracker.fault('health', err);
    }
  };
}
