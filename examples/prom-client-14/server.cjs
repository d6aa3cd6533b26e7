/**
 * An app that already serves prom-client's global register on /metrics (here prom-client 14).
 * streamscope is installed beside it (prom-client is its peer dependency): the stream_* series
 * appear in that register, with no registry passed anywhere.
 *
 *   npm install && npm start                 # instrument() on the streaming route
 *   npm run start:register                   # no code change: node --require streamscope/register
 *   curl -N http://127.0.0.1:<port>/ticks    # a short SSE stream
 *   curl http://127.0.0.1:<port>/metrics     # the app's own endpoint: stream_started_total{route="/ticks"} …
 *
 * PORT chooses the port (default: a free one). The first line printed is JSON: { "port": … }.
 */
'use strict';
const http = require('node:http');
const client = require('prom-client');

// Under --require streamscope/register every response is observed already; else wrap the handler.
const registered = process.execArgv.some((a) => a.includes('streamscope/register'));
const { instrument } = require('streamscope');
const wrap = registered ? (h) => h : (h) => instrument(h, { route: '/ticks' });

const TICKS = Number(process.env.TICKS ?? 5);

const ticks = wrap((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  let n = 0;
  const timer = setInterval(() => {
    res.write(`data: tick ${n}\n\n`);
    if (++n === TICKS) {
      clearInterval(timer);
      res.end();
    }
  }, 10);
  req.on('close', () => clearInterval(timer));
});

const server = http.createServer((req, res) => {
  const path = (req.url ?? '').split('?')[0];
  if (path === '/metrics') {
    client.register.metrics().then(
      (body) => {
        res.setHeader('Content-Type', client.register.contentType);
        res.end(body);
      },
      (err) => {
        res.statusCode = 500;
        res.end(String(err));
      },
    );
  } else if (path === '/ticks') {
    ticks(req, res);
  } else {
    res.statusCode = 404;
    res.end('try /ticks or /metrics\n');
  }
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const { port } = server.address();
  console.log(JSON.stringify({ port, promClient: require('prom-client/package.json').version, registered }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
