// Writes a large heap snapshot: millions of small objects in Maps (a cache-like workload) plus a few
// leaked responses of closed connections. Usage: node --max-old-space-size=8192 make-snapshot.mjs OUT [objects]
import http from 'node:http';
import v8 from 'node:v8';

const out = process.argv[2];
const objects = Number(process.argv[3] ?? 4_000_000);
const maps = [];
let m = new Map();
for (let i = 0; i < objects; i++) {
  if (m.size === 100_000) {
    maps.push(m);
    m = new Map();
  }
  m.set(i, { id: i, label: `item-${i}`, tags: [i & 7] });
}
maps.push(m);

const leaked = [];
const server = http.createServer((req, res) => {
  leaked.push(res);
  res.write('data: x\n\n');
});
server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address();
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => {
      const c = http.get({ port, agent: false }, (r) => r.once('data', () => (c.destroy(), resolve())));
    });
  }
  await new Promise((r) => setTimeout(r, 300));
  v8.writeHeapSnapshot(out);
  process.stdout.write(`${JSON.stringify({ out, objects, maps: maps.length, leaked: leaked.length })}\n`);
  process.exit(0);
});
