#!/usr/bin/env node
// What one idle open stream keeps on the heap, object by object: for finding a cost, not a benchmark.
// A server child (bare node:http, or a built streamscope's `instrument()`) serves scenario (c)'s idle SSE stream
// (headers and one comment, then nothing); this process opens N raw TCP clients to it. The child writes a heap
// snapshot (v8.writeHeapSnapshot, after GC) before and after the N streams open, and the two are compared by
// object kind (V8's node type and name: a class, `(closure)`, `system / Context`, an array...). Per stream = the
// difference / N. Run it for bare and for a build, and read the rows that differ.
//
//   node bench/core/heap-diff.mjs [N=2000] [lib ...]   lib: "bare" or a path to dist/esm/index.js (default: both);
//                                                     `path#{"captureStacks":true}` adds options to instrument()
//   HEAPDIFF_TOP=40 rows shown per lib; HEAPDIFF_KEEP=1 keeps the snapshot files (in a temp dir)
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);

if (process.env.HEAPDIFF_CHILD) {
  const http = await import('node:http');
  const v8 = await import('node:v8');
  const libPath = process.env.HEAPDIFF_CHILD;
  const opts = JSON.parse(process.env.HEAPDIFF_OPTS || '{}');
  let open = 0;
  let handler = function idle(req, res) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(': open\n\n');
    open++;
    res.once('close', () => open--);
  };
  if (libPath !== 'bare') handler = (await import(libPath)).instrument(handler, { route: '/idle', ...opts });
  const server = http.createServer(handler);
  server.keepAliveTimeout = 60_000;
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  const settle = async () => {
    for (let i = 0; i < 4; i++) {
      global.gc();
      await new Promise((r) => setImmediate(r));
    }
    global.gc();
  };
  process.on('message', async (m) => {
    if (m.type === 'snap') {
      await settle();
      const file = v8.writeHeapSnapshot(m.file);
      process.send({ type: 'snap', file, open, heapUsed: process.memoryUsage().heapUsed });
    }
  });
  server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => process.send({ type: 'ready', port: server.address().port }));
} else {
  const [nArg, ...libArgs] = process.argv.slice(2);
  const N = Number(nArg ?? 2000);
  const TOP = Number(process.env.HEAPDIFF_TOP ?? 40);
  const libs = libArgs.length > 0 ? libArgs : ['bare', path.join(path.dirname(self), '..', '..', 'dist', 'esm', 'index.js')];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'streamscope-heapdiff-'));
  const results = new Map();
  for (const l of libs) {
    const [file, opts = ''] = l.split('#');
    const lib = file === 'bare' ? 'bare' : path.resolve(file);
    results.set(l, await measure(lib, N, dir, opts));
  }
  for (const [l, r] of results) {
    console.log(`\n${l}: ${r.open} open, heapUsed ${(r.heapPerStream).toFixed(0)} B per stream, snapshot objects ${r.total.toFixed(0)} B per stream`);
    for (const row of r.rows.slice(0, TOP)) console.log(`  ${row.bytes.toFixed(1).padStart(8)} B  ${row.count.toFixed(2).padStart(6)} ×  ${row.key}`);
  }
  if (results.size === 2) {
    const [[la, a], [lb, b]] = [...results];
    const keys = new Set([...a.byKey.keys(), ...b.byKey.keys()]);
    const rows = [];
    for (const k of keys) {
      const x = a.byKey.get(k) ?? { bytes: 0, count: 0 };
      const y = b.byKey.get(k) ?? { bytes: 0, count: 0 };
      if (Math.abs(y.bytes - x.bytes) >= 1) rows.push({ key: k, bytes: y.bytes - x.bytes, count: y.count - x.count });
    }
    rows.sort((p, q) => Math.abs(q.bytes) - Math.abs(p.bytes));
    console.log(`\n${lb} − ${la}, per stream: heapUsed ${(b.heapPerStream - a.heapPerStream).toFixed(0)} B, snapshot objects ${(b.total - a.total).toFixed(0)} B`);
    for (const row of rows.slice(0, TOP)) console.log(`  ${row.bytes.toFixed(1).padStart(8)} B  ${row.count.toFixed(2).padStart(6)} ×  ${row.key}`);
  }
  if (!process.env.HEAPDIFF_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  else console.log(`\nsnapshots in ${dir}`);
}

function ask(child, msg) {
  return new Promise((resolve) => {
    child.once('message', resolve);
    child.send(msg);
  });
}

async function measure(lib, n, dir, opts) {
  const child = fork(self, [], { env: { ...process.env, HEAPDIFF_CHILD: lib, HEAPDIFF_OPTS: opts }, execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { port } = await new Promise((resolve) => child.once('message', resolve));
  const tag = lib === 'bare' ? 'bare' : 'lib';
  try {
    // warm-up: code, parser free list, label children exist before the baseline
    const warm = await connect(port, 300);
    for (const s of warm) s.destroy();
    await new Promise((r) => setTimeout(r, 500));
    const before = await ask(child, { type: 'snap', file: path.join(dir, `${tag}-0.heapsnapshot`) });
    const socks = await connect(port, n);
    await new Promise((r) => setTimeout(r, 500));
    const after = await ask(child, { type: 'snap', file: path.join(dir, `${tag}-1.heapsnapshot`) });
    for (const s of socks) s.destroy();
    const a = aggregate(before.file);
    const b = aggregate(after.file);
    const open = after.open;
    const byKey = new Map();
    let total = 0;
    for (const [k, y] of b) {
      const x = a.get(k) ?? { bytes: 0, count: 0 };
      const d = { bytes: (y.bytes - x.bytes) / open, count: (y.count - x.count) / open };
      byKey.set(k, d);
      total += d.bytes;
    }
    for (const [k, x] of a) {
      if (b.has(k)) continue;
      byKey.set(k, { bytes: -x.bytes / open, count: -x.count / open });
      total -= x.bytes / open;
    }
    const rows = [...byKey].map(([key, d]) => ({ key, ...d })).filter((r) => Math.abs(r.bytes) >= 1);
    rows.sort((p, q) => q.bytes - p.bytes);
    return { open, heapPerStream: (after.heapUsed - before.heapUsed) / open, total, rows, byKey };
  } finally {
    child.kill();
  }
}

/** Opens n idle SSE requests (100 at a time) and resolves once each has its first bytes. */
async function connect(port, n) {
  const socks = [];
  for (let i = 0; i < n; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 100); j++) {
      batch.push(
        new Promise((resolve, reject) => {
          const s = net.connect(port, '127.0.0.1', () => s.write('GET /idle HTTP/1.1\r\nHost: x\r\n\r\n'));
          s.once('data', () => resolve(s));
          s.once('error', reject);
        }),
      );
    }
    socks.push(...(await Promise.all(batch)));
  }
  return socks;
}

/** Self sizes and counts of a heap snapshot's objects, by node type and name. */
function aggregate(file) {
  const snap = JSON.parse(fs.readFileSync(file, 'utf8'));
  const { node_fields: fields, node_types: types } = snap.snapshot.meta;
  const nf = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const typeNames = types[iType];
  const { nodes, strings } = snap;
  const out = new Map();
  for (let i = 0; i < nodes.length; i += nf) {
    const type = typeNames[nodes[i + iType]];
    let name = strings[nodes[i + iName]];
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = '';
    else if (type === 'number') name = 'heap number';
    else if (name.length > 60) name = name.slice(0, 60) + '…';
    const key = `${type}: ${name}`;
    const e = out.get(key) ?? { bytes: 0, count: 0 };
    e.bytes += nodes[i + iSize];
    e.count++;
    out.set(key, e);
  }
  fs.rmSync(file, { force: true });
  return out;
}
