/**
 * An app that configured OpenTelemetry metrics itself: a MeterProvider from @opentelemetry/sdk-metrics with a
 * PeriodicExportingMetricReader, registered globally before any stream opens. streamscope records its
 * contract metrics (stream_started_total, stream_duration_seconds, stream_bytes_written_total, …) as OTel
 * instruments on that provider; they leave through whatever exporter the app chose. No streamscope option.
 *
 *   npm install && npm start                            # console exporter: the instruments printed every 10 s
 *   curl -N 'http://127.0.0.1:<port>/ticks?n=5'         # an SSE stream of n ticks, one every `every` ms (10)
 *   npm run start:memory                                # in-memory exporter, read through the app:
 *   curl http://127.0.0.1:<port>/otel-metrics           # flushes the reader, answers what the exporter got (JSON)
 *
 * OTEL_EXAMPLE_EXPORTER: console (default) or memory. EXPORT_INTERVAL_MS: the reader's interval (10000).
 * PORT chooses the port (default: a free one). The first line printed is JSON: { "port": …, "exporter": … }.
 */
import http from 'node:http';
import { metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  ConsoleMetricExporter,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { instrument } from 'streamscope';

const kind = process.env.OTEL_EXAMPLE_EXPORTER ?? 'console';
if (kind !== 'console' && kind !== 'memory') {
  console.error(`OTEL_EXAMPLE_EXPORTER must be console or memory, not ${JSON.stringify(kind)}`);
  process.exit(2);
}
const exporter = kind === 'memory' ? new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE) : new ConsoleMetricExporter();
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: Number(process.env.EXPORT_INTERVAL_MS ?? 10_000) });
const provider = new MeterProvider({ readers: [reader] });
metrics.setGlobalMeterProvider(provider); // before the first stream: streams opened earlier are not in OTel

// An SSE route: n ticks, one every `every` ms, then the end. The timer stops when the client goes away.
const ticks = instrument(
  (req, res) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    const n = Number(q.get('n') ?? 5);
    const every = Number(q.get('every') ?? 10);
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    let i = 0;
    const tick = () => {
      res.write(`data: tick ${i}\n\n`);
      if (++i === n) {
        clearInterval(timer);
        res.end();
      }
    };
    const timer = setInterval(tick, every);
    tick();
    req.on('close', () => clearInterval(timer));
  },
  { route: '/ticks' },
);

/** What the in-memory exporter holds after a flush: streamscope's instruments, as plain JSON. */
async function exported() {
  exporter.reset();
  await reader.forceFlush();
  const out = [];
  for (const rm of exporter.getMetrics()) {
    for (const sm of rm.scopeMetrics) {
      if (sm.scope.name !== 'streamscope') continue;
      for (const m of sm.metrics) {
        out.push({
          name: m.descriptor.name,
          unit: m.descriptor.unit,
          points: m.dataPoints.map((p) => ({ attributes: p.attributes, value: p.value })),
        });
      }
    }
  }
  return out;
}

const server = http.createServer((req, res) => {
  const path = (req.url ?? '').split('?')[0];
  if (path === '/ticks') {
    ticks(req, res);
  } else if (path === '/otel-metrics' && kind === 'memory') {
    exported().then(
      (body) => {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify(body));
      },
      (err) => {
        res.statusCode = 500;
        res.end(String(err));
      },
    );
  } else {
    res.statusCode = 404;
    res.end(kind === 'memory' ? 'try /ticks or /otel-metrics\n' : 'try /ticks\n');
  }
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port, exporter: kind }));
});
process.on('SIGTERM', () => {
  server.close();
  provider.shutdown().finally(() => process.exit(0)); // a last export
});
