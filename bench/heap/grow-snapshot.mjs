// Grows a V8 heap snapshot K times without V8: the output holds V8's synthetic root once and K copies of every
// other node and edge of the input (ids, edge targets and `locations` shifted per copy), the root pointing
// into each copy, and the input's strings once. Each copy is the heap V8 wrote, so the graph has the shape of
// a real one (K isolated heaps under one root); the findings of the input come back K times.
// Why: V8 needs about 4.7x the file size in memory to write a snapshot (measured: 3.8 GB peak for an 800 MB
// file), so a 4 GB snapshot written by V8 would take ~19 GB of a shared 24 GB machine; this takes a few MB.
//   node grow-snapshot.mjs IN OUT K
import fs from 'node:fs';

const [input, output, kArg] = process.argv.slice(2);
const K = Number(kArg);
if (!input || !output || !(K >= 1)) {
  console.error('usage: node grow-snapshot.mjs IN OUT K');
  process.exit(2);
}
const fd = fs.openSync(input, 'r');
const size = fs.fstatSync(fd).size;
const CH = 1 << 22;

/** Offset just after the first `needle` at or after `from` (a plain byte search over chunks). */
function find(needle, from) {
  const nb = Buffer.from(needle);
  const buf = Buffer.allocUnsafe(CH + nb.length);
  for (let pos = from; pos < size; pos += CH) {
    const n = fs.readSync(fd, buf, 0, CH + nb.length, pos);
    const i = buf.subarray(0, n).indexOf(nb);
    if (i >= 0) return pos + i + nb.length;
  }
  throw new Error(`${needle} not found`);
}

/** Calls fn(value, index) for each number of the array starting at `from` (just after its `[`); returns the offset after `]`. */
function scan(from, fn) {
  const buf = Buffer.allocUnsafe(CH);
  let num = 0;
  let has = false;
  let k = 0;
  for (let pos = from; ; ) {
    const n = fs.readSync(fd, buf, 0, CH, pos);
    if (n === 0) throw new Error('truncated input');
    for (let i = 0; i < n; i++) {
      const c = buf[i];
      if (c >= 48 && c <= 57) {
        num = num * 10 + (c - 48);
        has = true;
      } else {
        if (has) fn(num, k++);
        num = 0;
        has = false;
        if (c === 93) return pos + i + 1;
      }
    }
    pos += n;
  }
}

const out = fs.openSync(output, 'w');
let parts = [];
let pending = 0;
const write = (s) => {
  parts.push(s);
  pending += s.length;
  if (pending > 1 << 22) flush();
};
const flush = () => {
  fs.writeSync(out, parts.join(''));
  parts = [];
  pending = 0;
};
const copyRaw = (from, to) => {
  flush();
  const buf = Buffer.allocUnsafe(CH);
  for (let pos = from; pos < to; ) {
    const n = fs.readSync(fd, buf, 0, Math.min(CH, to - pos), pos);
    fs.writeSync(out, buf, 0, n);
    pos += n;
  }
};

const nodesAt = find('"nodes":[', 0);
const head = Buffer.alloc(nodesAt);
fs.readSync(fd, head, 0, nodesAt, 0);
const headText = head.toString('utf8');
const header = JSON.parse(`${headText.slice(0, headText.lastIndexOf('"nodes"')).replace(/[,\s]*$/, '')}}`).snapshot;
const F = header.meta.node_fields.length;
const EF = header.meta.edge_fields.length;
const fId = header.meta.node_fields.indexOf('id');
const fEc = header.meta.node_fields.indexOf('edge_count');
const fTo = header.meta.edge_fields.indexOf('to_node');
const N = header.node_count;
const E = header.edge_count;

// pass 1: the largest id and the root's edge count
let maxId = 0;
let rootEdges = 0;
const edgesStart = find('"edges":[', scan(nodesAt, (v, k) => {
  if (k % F === fId && v > maxId) maxId = v;
  if (k === fEc) rootEdges = v;
}));
const shift = maxId + 2 + (maxId % 2); // even (not `& ~1`: ids pass 2^31), so ids keep their parity (V8: odd for heap objects)
const node = (idx, c) => (idx === 0 ? 0 : idx + c * (N - 1));

header.node_count = 1 + K * (N - 1);
header.edge_count = K * E;
write(`{"snapshot":${JSON.stringify(header)},\n"nodes":[`);
let first = true;
const num = (v) => {
  write(first ? String(v) : `,${v}`);
  first = false;
};
for (let c = 0; c < K; c++) {
  scan(nodesAt, (v, k) => {
    if (k < F) {
      if (c === 0) num(k === fEc ? v * K : v); // the root, once
      return;
    }
    num(k % F === fId ? v + c * shift : v);
  });
}
write('],\n"edges":[');
first = true;
let edgesEnd = 0;
// the root's edges into each copy, then each copy's own edges
for (let c = 0; c < K; c++) {
  scan(edgesStart, (v, k) => {
    if (k >= rootEdges * EF) return;
    num(k % EF === fTo ? node(v / F, c) * F : v);
  });
}
for (let c = 0; c < K; c++) {
  edgesEnd = scan(edgesStart, (v, k) => {
    if (k < rootEdges * EF) return;
    num(k % EF === fTo ? node(v / F, c) * F : v);
  });
}
write(']');
// everything up to `locations` as it is (empty trace sections), locations per copy, the strings once
const locAt = find('"locations":[', edgesEnd);
copyRaw(edgesEnd, locAt);
first = true;
let locEnd = 0;
const W = (header.meta.location_fields ?? ['object_index', 'script_id', 'line', 'column']).length;
for (let c = 0; c < K; c++) {
  locEnd = scan(locAt, (v, k) => num(k % W === 0 ? node(v / F, c) * F : v));
}
write(']');
copyRaw(locEnd, size);
flush();
fs.closeSync(out);
process.stdout.write(`${JSON.stringify({ out: output, copies: K, nodes: header.node_count, edges: header.edge_count, bytes: fs.statSync(output).size })}\n`);
