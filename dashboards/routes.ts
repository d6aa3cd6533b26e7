/**
 * "streamscope / Stream health by route": the overview's signals split by route, with the slowest
 * and the leakiest routes first (ranking tables over the dashboard range, legends sorted worst first).
 */
import type * as dash from '@grafana/grafana-foundation-sdk/dashboard';
import { Board } from './board.js';
import { rankingTable, timeseriesPanel } from './panels.js';
import { blockedShare, outcomeShare, quantile, SERVER_FAULT_OUTCOMES, sumGauge, sumIncrease, sumRate } from './queries.js';

export const ROUTES_UID = 'streamscope-routes';

const R = ['route'];

export function routesDashboard(): dash.Dashboard {
  const b = new Board({
    uid: ROUTES_UID,
    title: 'streamscope / Stream health by route',
    description:
      'streamscope stream signals per route: which routes are slowest, which leak, which block. Ranking tables cover the whole time range; legends list the worst route first.',
  });

  b.row('Rankings');
  b.panel(
    rankingTable({
      title: 'Slowest routes',
      description:
        'Routes over the selected time range, slowest p95 stream duration first, with time to first write, streams started, the server-fault share (error and timeout among streams not aborted by the client) and streams open now.',
      width: 12,
      columns: [
        { name: 'p95 duration', expr: quantile(0.95, 'stream_duration_seconds', R, '$__range'), unit: 's' },
        { name: 'p95 first write', expr: quantile(0.95, 'stream_first_write_seconds', R, '$__range'), unit: 's' },
        { name: 'streams started', expr: sumIncrease('stream_started_total', R), unit: 'short' },
        { name: 'server-fault share', expr: outcomeShare(SERVER_FAULT_OUTCOMES, R, true, '$__range'), unit: 'percentunit' },
        { name: 'open now', expr: sumGauge('stream_active_connections', R), unit: 'short' },
      ],
    }),
  );
  b.panel(
    rankingTable({
      title: 'Leakiest routes',
      description:
        'Routes over the selected time range, most leak findings first, with writes after close, blocked writes, and streams stalled and bytes buffered now.',
      width: 12,
      columns: [
        { name: 'leak findings', expr: sumIncrease('stream_leaks_total', R), unit: 'short' },
        { name: 'writes after close', expr: sumIncrease('stream_writes_after_close_total', R), unit: 'short' },
        { name: 'blocked writes', expr: sumIncrease('write_blocked_total', R), unit: 'short' },
        { name: 'stalled now', expr: sumGauge('stream_stalled', R), unit: 'short' },
        { name: 'buffered now', expr: sumGauge('stream_buffered_bytes', R), unit: 'bytes' },
      ],
    }),
  );

  b.row('Traffic and outcomes by route');
  b.panel(
    timeseriesPanel({
      title: 'Streams started by route',
      description: 'Streams opened per second, per route (stream_started_total).',
      unit: 'reqps',
      width: 8,
      rankBy: 'mean',
      queries: [{ expr: sumRate('stream_started_total', R), legend: '{{route}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Active streams by route',
      description: 'Streams open now, per route (stream_active_connections).',
      unit: 'short',
      width: 8,
      rankBy: 'lastNotNull',
      queries: [{ expr: sumGauge('stream_active_connections', R), legend: '{{route}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Server-fault share by route',
      description:
        'Share of error and timeout outcomes among streams not aborted by the client, per route (stream_duration_seconds_count): the SLO signal of the alerts, per route.',
      unit: 'percentunit',
      width: 8,
      rankBy: 'max',
      queries: [{ expr: outcomeShare(SERVER_FAULT_OUTCOMES, R, true), legend: '{{route}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Outcomes by route',
      description: 'Streams closed per second, per route and outcome (stream_duration_seconds_count).',
      unit: 'reqps',
      width: 24,
      stack: true,
      rankBy: 'mean',
      queries: [{ expr: sumRate('stream_duration_seconds_count', ['route', 'outcome']), legend: '{{route}} {{outcome}}' }],
    }),
  );

  b.row('Latency by route');
  b.panel(
    timeseriesPanel({
      title: 'Stream duration p95 by route',
      description: 'p95 of open-to-close time, per route (stream_duration_seconds).',
      unit: 's',
      rankBy: 'max',
      queries: [{ expr: quantile(0.95, 'stream_duration_seconds', R), legend: '{{route}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Time to first write p95 by route',
      description: 'p95 of open-to-first-byte time (time to first token), per route (stream_first_write_seconds).',
      unit: 's',
      rankBy: 'max',
      queries: [{ expr: quantile(0.95, 'stream_first_write_seconds', R), legend: '{{route}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'First byte on the wire minus first write p95 by route',
      description:
        'p95 time to first body byte handed to the socket (stream_first_byte_seconds) less p95 time to first write (stream_first_write_seconds), per route: how long something held the first bytes (a compression middleware, a Transform without flush; finding buffered_stream).',
      unit: 's',
      rankBy: 'max',
      queries: [
        {
          expr: `${quantile(0.95, 'stream_first_byte_seconds', R)} - ${quantile(0.95, 'stream_first_write_seconds', R)}`,
          legend: '{{route}}',
        },
      ],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Gaps between writes p95 by route',
      description:
        'p95 over streams of each stream\'s longest gap between writes, per route (stream_longest_write_gap_seconds, seen by the sweep, observed at close): the routes that stutter; and, on routes with writeGaps, p95 of every gap (stream_write_gap_seconds, inter-chunk latency).',
      unit: 's',
      rankBy: 'max',
      queries: [
        { expr: quantile(0.95, 'stream_longest_write_gap_seconds', R), legend: '{{route}} longest gap' },
        { expr: quantile(0.95, 'stream_write_gap_seconds', R), legend: '{{route}} every gap' },
      ],
    }),
  );

  b.row('Writes and backpressure by route');
  b.panel(
    timeseriesPanel({
      title: 'Bytes written by route',
      description: 'Body bytes handed to the socket per second, per route (stream_bytes_written_total).',
      unit: 'Bps',
      width: 8,
      rankBy: 'mean',
      queries: [{ expr: sumRate('stream_bytes_written_total', R), legend: '{{route}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Blocked write share by route',
      description:
        'Fraction of writes that met backpressure, per route (write_blocked_total / stream_writes_total): the routes whose clients read slower than the route writes.',
      unit: 'percentunit',
      width: 8,
      rankBy: 'mean',
      queries: [{ expr: blockedShare(R), legend: '{{route}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Blocked time p95 by route',
      description: "p95 of how long a blocked write waited for 'drain' (or close), per route (stream_write_blocked_seconds).",
      unit: 's',
      width: 8,
      rankBy: 'max',
      queries: [{ expr: quantile(0.95, 'stream_write_blocked_seconds', R), legend: '{{route}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Buffered bytes by route',
      description: 'Bytes queued in user space for open streams, per route (stream_buffered_bytes, read at scrape time).',
      unit: 'bytes',
      rankBy: 'max',
      queries: [{ expr: sumGauge('stream_buffered_bytes', R), legend: '{{route}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Stalled streams by route',
      description: "Open streams blocked on 'drain' longer than stallAfterMs, per route (stream_stalled, read at scrape time).",
      unit: 'short',
      rankBy: 'max',
      queries: [{ expr: sumGauge('stream_stalled', R), legend: '{{route}}' }],
    }),
  );

  b.row('Leaks by route');
  b.panel(
    timeseriesPanel({
      title: 'Leak findings by route and kind',
      description: 'Leak-detector findings per minute, per route and kind (stream_leaks_total).',
      unit: 'cpm',
      rankBy: 'mean',
      queries: [{ expr: `60 * ${sumRate('stream_leaks_total', ['route', 'kind'])}`, legend: '{{route}} {{kind}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Writes after close by route',
      description: 'Writes attempted after the client went away, per route (stream_writes_after_close_total).',
      unit: 'wps',
      rankBy: 'mean',
      queries: [{ expr: sumRate('stream_writes_after_close_total', R), legend: '{{route}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Guard actions by route and guard',
      description: 'Streams cut or producers stopped by an opt-in guard per minute, per route and guard (stream_guard_actions_total). See docs/guards.md.',
      unit: 'cpm',
      width: 24,
      rankBy: 'mean',
      queries: [{ expr: `60 * ${sumRate('stream_guard_actions_total', ['route', 'guard'])}`, legend: '{{route}} {{guard}}' }],
    }),
  );

  b.row('Resilience by route');
  b.panel(
    timeseriesPanel({
      title: 'Resumes by route and result',
      description: 'Resume attempts per second, per route and result (stream_resumes_total): replayed, expired, invalid.',
      unit: 'reqps',
      rankBy: 'mean',
      queries: [{ expr: sumRate('stream_resumes_total', ['route', 'result']), legend: '{{route}} {{result}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Rejections by route and reason',
      description: 'Streams refused per second, per route and reason (stream_rejected_total): rate_limited, overloaded.',
      unit: 'reqps',
      rankBy: 'mean',
      queries: [{ expr: sumRate('stream_rejected_total', ['route', 'reason']), legend: '{{route}} {{reason}}' }],
    }),
  );

  return b.build();
}
