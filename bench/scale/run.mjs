#!/usr/bin/env node
// Scale: N open streams on one process with the detectors on (docs/reliability.md).
//   node bench/scale/run.mjs [--streams 10000]
// Opens N streams on /plain (no streamscope) and measures, closes them, then N on /inst (instrument(), detectors
// on) and measures: heap per stream (after GC, against the same process with none open), sweep cost, /metrics
// scrape time and size, event-loop delay p99 while scraping. Figures on a shared machine are indicative; the
// ratios against /plain in the same run are what to compare.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const i = process.argv.indexOf('--streams');
const N = i < 0 ? 10_000 : Number(process.argv[i + 1]);

const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', join(ROOT, 'bench/scale/app.ts')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise((res, rej) => {
  let out = '';
  child.stdout.on('data', (c) => {
    out += c;
    const m = /READY (\d+)/.exec(out);
    if (m) res(Number(m[1]));
  });
  child.on('exit', (c) => rej(new Error(`app exited ${c}`)));
});

function get(path) {
  return new Promise((res, rej) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (r) => {
      let b = '';
      r.on('data', (c) => (b += c));
      r.on('end', () => res(b));
    }).on('error', rej);
  });
}

async function openMany(path, n) {
  const reqs = [];
  let opened = 0;
  const batch = 200;
  for (let k = 0; k < n; k += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, n - k) }, () =>
        new Promise((res, rej) => {
          const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (r) => {
            r.once('data', () => {
              opened++;
              res();
            });
          });
          req.on('error', rej);
          reqs.push(req);
        }),
      ),
    );
  }
  return { reqs, opened };
}

const fmt = (m) =>
  `open ${m.open}, heap ${(m.heapUsed / 1048576).toFixed(1)} MiB, sweep median ${m.sweepMedianMs.toFixed(2)} ms (max ${m.sweepMaxMs.toFixed(2)}), ` +
  `/metrics ${m.scrapeBytes} B in ${m.scrapeMedianMs.toFixed(1)} ms median (max ${m.scrapeMaxMs.toFixed(1)}), loop delay p99 while scraping ${m.loopDelayP99Ms.toFixed(1)} ms (max ${m.loopDelayMaxMs.toFixed(1)})`;

const base = JSON.parse(await get('/measure'));
console.log(`none open:      ${fmt(base)}`);
const results = { base };
for (const path of ['/plain', '/inst']) {
  const t = performance.now();
  const { reqs, opened } = await openMany(path, N);
  const openMs = performance.now() - t;
  await new Promise((r) => setTimeout(r, 500));
  const m = JSON.parse(await get('/measure'));
  m.openSeconds = openMs / 1000;
  m.heapPerStream = (m.heapUsed - base.heapUsed) / opened;
  results[path] = m;
  console.log(`${N} on ${path.padEnd(6)}: ${fmt(m)}; opened in ${(openMs / 1000).toFixed(1)} s; heap per stream ${(m.heapPerStream / 1024).toFixed(2)} KiB`);
  for (const r of reqs) r.destroy();
  await new Promise((r) => setTimeout(r, 2000));
}
const extra = results['/inst'].heapPerStream - results['/plain'].heapPerStream;
console.log(`streamscope's own heap per open stream (instrumented minus plain): ${(extra / 1024).toFixed(2)} KiB`);
console.log(JSON.stringify(results));
child.kill();
