/**
 * HTTP/2: both ways of writing an HTTP/2 server are tracked, with the same metrics, outcomes, detectors and
 * spans as HTTP/1.1. A client's RST_STREAM is `client_aborted`, and writes after it are writes after close.
 *
 *   TLS_KEY=key.pem TLS_CERT=cert.pem npx tsx examples/http2.ts     # TLS (what browsers speak)
 *   npx tsx examples/http2.ts                                        # h2c (cleartext), for curl and tests
 *   curl --http2-prior-knowledge -N http://127.0.0.1:<port>/sse/7    # compatibility API + sse(), route="/sse/:id"
 *   curl --http2-prior-knowledge -N http://127.0.0.1:<stream-port>/tokens    # `stream` event API
 *   curl http://127.0.0.1:<metrics-port>/metrics
 *
 * `?n=` sets how many events each route sends (default 5). (`openssl req -x509 -newkey rsa:2048 -nodes
 * -keyout key.pem -out cert.pem -subj /CN=localhost` makes a certificate to try TLS.)
 */
import http from 'node:http';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { instrument, metricsHandler, sse } from '../src/index.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const count = (path: string | undefined): number => Number(new URL(path ?? '/', 'http://x').searchParams.get('n') ?? 5);
const tls = process.env.TLS_KEY && process.env.TLS_CERT ? { key: readFileSync(process.env.TLS_KEY), cert: readFileSync(process.env.TLS_CERT) } : null;

// 1. The compatibility API (req/res, what most frameworks run on): instrument() the handler, or use sse().
const sseOptions = { heartbeatMs: 15_000 };
async function compat(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): Promise<void> {
  const n = count(req.url);
  if (req.url?.startsWith('/sse/')) {
    // The resilient runtime works over HTTP/2 (no Connection header; send() waits for the stream's drain).
    await sse(req, res, sseOptions).run(async (stream) => {
      for (let i = 0; i < n; i++) {
        await stream.send({ id: String(i), data: { i } });
        await sleep(5);
      }
    });
    return;
  }
  // A handler written by hand: NDJSON lines until done or the client resets the stream.
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  for (let i = 0; i < n && !res.stream.destroyed; i++) {
    res.write(JSON.stringify({ line: i }) + '\n');
    await sleep(5);
  }
  res.end();
}
const app = tls ? http2.createSecureServer(tls, instrument(compat)) : http2.createServer(instrument(compat));

// 2. The `stream` event API: instrument() takes the (stream, headers) handler as it is.
const streamServer = tls ? http2.createSecureServer(tls) : http2.createServer();
streamServer.on(
  'stream',
  instrument(async (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on('error', () => undefined); // a reset stream reports an error: the producer below stops on `destroyed`
    const n = count(headers[':path']);
    stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
    for (let i = 0; i < n && !stream.destroyed; i++) {
      stream.write(JSON.stringify({ token: `tok${i}` }) + '\n');
      await sleep(5);
    }
    if (!stream.destroyed) stream.end();
  }),
);

const metrics = http.createServer(metricsHandler());

const listen = (s: { listen(port: number, host: string, cb: () => void): unknown; address(): unknown }, port = 0): Promise<number> =>
  new Promise((r) => s.listen(port, '127.0.0.1', () => r((s.address() as { port: number }).port)));
const scheme = tls ? 'https' : 'http';
const [appPort, streamPort, metricsPort] = await Promise.all([listen(app, Number(process.env.PORT ?? 0)), listen(streamServer), listen(metrics)]);
console.log(`http2 example on ${scheme}://127.0.0.1:${appPort}  (/sse/:id, /ndjson; ${tls ? 'TLS' : 'h2c'})`);
console.log(`stream events on ${scheme}://127.0.0.1:${streamPort}  (/tokens)`);
console.log(`metrics on http://127.0.0.1:${metricsPort}/metrics`);

function stop(): void {
  for (const s of [app, streamServer, metrics]) s.close();
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
