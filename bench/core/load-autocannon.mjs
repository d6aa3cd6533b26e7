// Load child for (b): runs autocannon on command against one server at a time, so the harness can
// interleave short measured slices of every variant. Each run is bounded by its duration.
// IPC: {type:'run', id, port, durationS, connections} → {id, rps, requests, ...}; {type:'exit'}.
import autocannon from 'autocannon';

setTimeout(() => process.exit(3), Number(process.env.BENCH_MAX_S ?? 600) * 1000).unref();

process.on('message', async (msg) => {
  if (msg.type === 'exit') process.exit(0);
  if (msg.type !== 'run') return;
  try {
    const result = await autocannon({
      url: `http://127.0.0.1:${msg.port}/`,
      connections: msg.connections,
      duration: msg.durationS,
      pipelining: 1,
      timeout: 10,
    });
    process.send({
      id: msg.id,
      rps: result.requests.total / result.duration,
      requests: result.requests.total,
      durationS: result.duration,
      p50ms: result.latency.p50,
      p99ms: result.latency.p99,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
    });
  } catch (err) {
    process.send({ id: msg.id, error: String(err?.stack ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ type: 'ready' });
