/** "streamscope / Streams overview": the whole service at a glance, all routes summed. */
import type * as dash from '@grafana/grafana-foundation-sdk/dashboard';
import { Board } from './board.js';
import { timeseriesPanel } from './panels.js';
import { blockedShare, CLIENT_ABORTED, outcomeShare, quantile, SERVER_FAULT_OUTCOMES, sumGauge, sumRate } from './queries.js';

export const OVERVIEW_UID = 'streamscope-overview';

export function overviewDashboard(): dash.Dashboard {
  const b = new Board({
    uid: OVERVIEW_UID,
    title: 'streamscope / Streams overview',
    description:
      'Streaming HTTP responses (SSE, NDJSON, chunked) tracked by streamscope: traffic, outcomes, latency, backpressure, leaks and resilience, summed over the chosen jobs, instances and routes.',
  });

  b.row('Traffic and outcomes');
  b.panel(
    timeseriesPanel({
      title: 'Streams started',
      description: 'Streams opened per second, by HTTP method (stream_started_total).',
      unit: 'reqps',
      width: 8,
      queries: [{ expr: sumRate('stream_started_total', ['method']), legend: '{{method}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Active streams',
      description: 'Streams open now (stream_active_connections), per instance. Climbing without more traffic means streams are not closing.',
      unit: 'short',
      width: 8,
      queries: [{ expr: sumGauge('stream_active_connections', ['instance']), legend: '{{instance}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Outcome mix',
      description:
        'Streams closed per second by outcome (stream_duration_seconds_count): completed, client_aborted (the client left), error (the handler failed), timeout.',
      unit: 'reqps',
      width: 8,
      stack: true,
      queries: [{ expr: sumRate('stream_duration_seconds_count', ['outcome']), legend: '{{outcome}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Abnormal terminations',
      description:
        'Server-fault share: error and timeout outcomes among streams that did not end by a client abort (the SLO of the alerts). Client-abort share: client_aborted among all closed streams, shown apart because the client chose to leave.',
      unit: 'percentunit',
      width: 24,
      height: 7,
      queries: [
        { expr: outcomeShare(SERVER_FAULT_OUTCOMES, [], true), legend: 'server fault (error, timeout)' },
        { expr: outcomeShare(CLIENT_ABORTED, [], false), legend: 'client aborted' },
      ],
    }),
  );

  b.row('Latency');
  b.panel(
    timeseriesPanel({
      title: 'Stream duration p50 / p95 / p99',
      description:
        'How long streams stay open, open to close (stream_duration_seconds), all outcomes. Long-lived streams (SSE feeds) are counted when they close.',
      unit: 's',
      queries: [0.5, 0.95, 0.99].map((q) => ({ expr: quantile(q, 'stream_duration_seconds', []), legend: `p${q * 100}` })),
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Time to first write p50 / p95',
      description: 'Open to first body byte (stream_first_write_seconds): time to first token for LLM-style streams.',
      unit: 's',
      queries: [0.5, 0.95].map((q) => ({ expr: quantile(q, 'stream_first_write_seconds', []), legend: `p${q * 100}` })),
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'First write vs first byte on the wire p95',
      description:
        'Open to first body byte given by the handler (stream_first_write_seconds) and open to first body byte handed to the socket (stream_first_byte_seconds). Apart when something holds the bytes: a compression middleware or a Transform without flush (finding buffered_stream, docs/detectors.md).',
      unit: 's',
      queries: [
        { expr: quantile(0.95, 'stream_first_write_seconds', []), legend: 'first write p95' },
        { expr: quantile(0.95, 'stream_first_byte_seconds', []), legend: 'first byte on the wire p95' },
      ],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Gaps between writes',
      description:
        'Per stream, the longest gap between writes (stream_longest_write_gap_seconds, p50 and p95, seen by the sweep, observed at close), and every gap (stream_write_gap_seconds p95, inter-chunk latency) on routes with writeGaps. A stutter shows as a longest gap far above the usual spacing.',
      unit: 's',
      queries: [
        { expr: quantile(0.5, 'stream_longest_write_gap_seconds', []), legend: 'longest gap per stream p50' },
        { expr: quantile(0.95, 'stream_longest_write_gap_seconds', []), legend: 'longest gap per stream p95' },
        { expr: quantile(0.95, 'stream_write_gap_seconds', []), legend: 'every gap p95 (writeGaps routes)' },
      ],
    }),
  );

  b.row('Writes and backpressure');
  b.panel(
    timeseriesPanel({
      title: 'Bytes written',
      description: 'Stream body bytes handed to the socket per second (stream_bytes_written_total).',
      unit: 'Bps',
      width: 8,
      queries: [{ expr: sumRate('stream_bytes_written_total', []), legend: 'bytes/s' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Writes and blocked writes',
      description:
        'Body writes per second (stream_writes_total) and writes that met backpressure, i.e. write() returned false (write_blocked_total).',
      unit: 'wps',
      width: 8,
      queries: [
        { expr: sumRate('stream_writes_total', []), legend: 'writes' },
        { expr: sumRate('write_blocked_total', []), legend: 'blocked writes' },
      ],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Blocked write share',
      description: 'Fraction of writes that met backpressure: the client (or network) reads slower than the service writes.',
      unit: 'percentunit',
      width: 8,
      queries: [{ expr: blockedShare([]), legend: 'blocked / all writes' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Blocked time p95 / p99',
      description: "How long a blocked write waited for 'drain' (or close) (stream_write_blocked_seconds).",
      unit: 's',
      width: 8,
      queries: [0.95, 0.99].map((q) => ({ expr: quantile(q, 'stream_write_blocked_seconds', []), legend: `p${q * 100}` })),
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Buffered bytes',
      description:
        'Bytes queued in user space for open streams (stream_buffered_bytes, read at scrape time), per instance. Grows when a producer ignores backpressure; it is process memory.',
      unit: 'bytes',
      width: 8,
      queries: [{ expr: sumGauge('stream_buffered_bytes', ['instance']), legend: '{{instance}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Stalled streams',
      description: "Open streams whose write has waited for 'drain' longer than stallAfterMs (stream_stalled, read at scrape time).",
      unit: 'short',
      width: 8,
      queries: [{ expr: sumGauge('stream_stalled', ['instance']), legend: '{{instance}}' }],
    }),
  );

  b.row('Leaks');
  b.panel(
    timeseriesPanel({
      title: 'Leak findings by kind',
      description:
        'Leak-detector findings per minute (stream_leaks_total): stalled_write, dangling_stream (client gone, producer still holds the stream), zombie_producer (writes after the client left), dangling_async, buffered_stream (written bytes held above the socket).',
      unit: 'cpm',
      queries: [{ expr: `60 * ${sumRate('stream_leaks_total', ['kind'])}`, legend: '{{kind}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Writes after close',
      description: 'Writes attempted after the client went away (stream_writes_after_close_total): a producer that does not stop.',
      unit: 'wps',
      queries: [{ expr: sumRate('stream_writes_after_close_total', []), legend: 'writes after close' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Guard actions',
      description:
        'Streams cut or producers stopped by an opt-in guard per minute, by guard (stream_guard_actions_total): max_buffered_bytes, stalled_action, zombie_action, dead_peer. Each cut stream ends with outcome error. See docs/guards.md.',
      unit: 'cpm',
      width: 24,
      queries: [{ expr: `60 * ${sumRate('stream_guard_actions_total', ['guard'])}`, legend: '{{guard}}' }],
    }),
  );

  b.row('Resilience and internals');
  b.panel(
    timeseriesPanel({
      title: 'Resumes by result',
      description: 'Resume attempts with Last-Event-ID per second (stream_resumes_total): replayed, expired (HTTP 416), invalid (HTTP 400).',
      unit: 'reqps',
      width: 8,
      queries: [{ expr: sumRate('stream_resumes_total', ['result']), legend: '{{result}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'Rejections by reason',
      description: 'Streams refused per second (stream_rejected_total): rate_limited, overloaded.',
      unit: 'reqps',
      width: 8,
      queries: [{ expr: sumRate('stream_rejected_total', ['reason']), legend: '{{reason}}' }],
    }),
  );
  b.panel(
    timeseriesPanel({
      title: 'streamscope internal errors',
      description:
        'Faults inside streamscope per minute, by component (streamscope_internal_errors_total). They are swallowed so the app never sees them, but metrics or findings may be incomplete.',
      unit: 'cpm',
      width: 8,
      queries: [{ expr: `60 * ${sumRate('streamscope_internal_errors_total', ['component'], '', false)}`, legend: '{{component}}' }],
    }),
  );

  return b.build();
}
