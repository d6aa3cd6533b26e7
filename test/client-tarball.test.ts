import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { spawnNode, type Child } from './helpers/child.js';
import { devVersion, installApp, type App } from './helpers/tarball.js';

/**
 * `streamscope/client` as users install it: the packed tarball (with its dependencies eventsource-parser and
 * crc from the registry), a checksummed hub served by `streamscope` (ESM), and the client loaded both ways,
 * `import` and `require`, in another process. Needs `npm run build` first.
 */

const SERVER = `import http from 'node:http';
import { createHub } from 'streamscope';
const hub = createHub({ checksum: 'crc32', heartbeatMs: 0, retryMs: 20 });
const server = http.createServer(async (req, res) => {
  if (req.method === 'POST') {
    // each POST publishes five events (a new client, anchored at the channel's end, gets those five)
    for (let i = 0; i < 5; i++) await hub.publish('c', { event: 'tick', data: 'e' + i });
    return res.end('ok');
  }
  await hub.subscribe(req, res, 'c');
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
process.on('SIGTERM', () => { server.closeAllConnections(); void hub.close().then(() => server.close(() => process.exit(0))); });
`;

/** A client that subscribes, asks the server to publish five events, prints what it got, and exits. */
const client = (load: string): string => `${load}
const url = 'http://127.0.0.1:' + process.env.PORT;
const got = [];
const c = connect(url + '/events', {
  retryMs: 20,
  onEvent: (e) => {
    got.push(e.event + ' ' + e.data);
    if (got.length === 5) { c.close(); console.log(JSON.stringify({ got, connections: c.connections })); }
  },
  onError: (e) => { console.log(JSON.stringify({ error: e.code, message: e.message })); process.exit(1); },
});
const poll = setInterval(() => {
  if (c.lastEventId === undefined) return; // anchored: connected
  clearInterval(poll);
  void fetch(url + '/publish', { method: 'POST' });
}, 10);
`;

let app: App;
let server: Child;
beforeAll(async () => {
  app = await installApp({ 'prom-client': devVersion('prom-client') }, 'module');
  server = await spawnNode([app.file('server.mjs', SERVER)], {}, app.dir);
}, 300_000);
afterAll(async () => {
  await server?.stop();
  app?.remove();
});

describe('streamscope/client from the installed tarball', () => {
  for (const [kind, name, load] of [
    ['import', 'client.mjs', "import { connect } from 'streamscope/client';"],
    ['require', 'client.cjs', "const { connect } = require('streamscope/client');"],
  ] as const) {
    it(`${kind}: verifies a checksummed hub stream and gets every event once, in order`, async () => {
      const { stdout } = await promisify(execFile)(process.execPath, [app.file(name, client(load))], {
        cwd: app.dir,
        env: { ...process.env, PORT: String(server.hello.port) },
        timeout: 30_000,
      });
      const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as { got: string[]; connections: number };
      expect(out.got).toEqual(['tick e0', 'tick e1', 'tick e2', 'tick e3', 'tick e4']);
      expect(out.connections).toBe(1);
    });
  }
});
