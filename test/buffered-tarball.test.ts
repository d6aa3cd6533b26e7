import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { spawnNode, ROOT, type Child } from './helpers/child.js';
import { parseExposition, sum, type Sample } from './helpers/http.js';
import { devVersion, installApp, type App } from './helpers/tarball.js';

/**
 * `buffered_stream`, time to first byte on the wire and the gaps between writes, through the packed tarball
 * installed beside the real `compression` middleware on Express 5 and `@fastify/compress` on Fastify 5
 * (test/fixtures/buffered/app.cjs: compression below streamscope, above it, and a Fastify stream payload).
 */

interface Finding {
  kind: string;
  route: string;
  detail: string;
}

let app: App;
let child: Child;
let ports: { inner: number; outer: number; fastify: number };

beforeAll(async () => {
  app = await installApp({
    express: devVersion('express'),
    fastify: devVersion('fastify'),
    compression: '^1.8.0',
    '@fastify/compress': '^9.0.0',
    'prom-client': devVersion('prom-client'),
  });
  app.file('app.cjs', fs.readFileSync(path.join(ROOT, 'test/fixtures/buffered/app.cjs'), 'utf8'));
  child = await spawnNode([path.join(app.dir, 'app.cjs')], { STREAMSCOPE_AGENT: '0' }, app.dir);
  ports = child.hello as typeof ports;
}, 300_000);

afterAll(async () => {
  await child?.stop();
  app?.remove();
});

/** Reads a whole response; `gzip` asks for compression. Resolves with the decoded body and when its bytes came. */
function read(port: number, p: string, gzip: boolean): Promise<{ encoding: string | undefined; body: string; firstChunkMs: number; totalMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const headers = gzip ? { 'accept-encoding': 'gzip' } : {};
    http
      .get({ host: '127.0.0.1', port, path: p, headers }, (res) => {
        const chunks: Buffer[] = [];
        let firstChunkMs = -1;
        res.on('data', (c: Buffer) => {
          if (firstChunkMs < 0) firstChunkMs = performance.now() - t0;
          chunks.push(c);
        });
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          const encoding = res.headers['content-encoding'];
          const body = encoding === 'gzip' ? zlib.gunzipSync(raw).toString() : raw.toString();
          resolve({ encoding, body, firstChunkMs, totalMs: performance.now() - t0 });
        });
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

async function findings(port: number): Promise<Finding[]> {
  return (await (await fetch(`http://127.0.0.1:${port}/findings`)).json()) as Finding[];
}

async function metrics(port: number): Promise<Sample[]> {
  return parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).samples;
}

/** Mean of a histogram for a route (one stream per route here: its value). */
function mean(samples: Sample[], name: string, route: string): number {
  const count = sum(samples, `${name}_count`, { route });
  expect(count, `${name} count on ${route}`).toBeGreaterThan(0);
  return sum(samples, `${name}_sum`, { route }) / count;
}

const buffered = (fs: Finding[], route: string): Finding[] => fs.filter((f) => f.kind === 'buffered_stream' && f.route === route);

describe('buffered_stream with real compression layers (packed tarball)', () => {
  it('Express 5 + compression, under streamscope and above it: an event stream without flushes is found, naming Content-Encoding and res.flush()', async () => {
    const [a, b] = await Promise.all([read(ports.inner, '/sse', true), read(ports.outer, '/outer/sse', true)]);
    for (const r of [a, b]) {
      expect(r.encoding).toBe('gzip');
      expect(r.body.match(/^data: /gm)).toHaveLength(20);
    }
    for (const [port, route] of [
      [ports.inner, '/sse'],
      [ports.outer, '/outer/sse'],
    ] as const) {
      const found = buffered(await findings(port), route);
      expect(found, `${route}: ${JSON.stringify(await findings(port))}`).toHaveLength(1);
      expect(found[0]!.detail).toMatch(/Content-Encoding: gzip/);
      expect(found[0]!.detail).toMatch(/res\.flush\(\) after each event/);
      // the stream was held above the socket: its first byte went out long after its first write (at the end)
      const m = await metrics(port);
      const firstWrite = mean(m, 'stream_first_write_seconds', route);
      const firstByte = mean(m, 'stream_first_byte_seconds', route);
      expect(firstByte - firstWrite, `${route}: first write ${firstWrite} s, first byte ${firstByte} s`).toBeGreaterThan(1.0);
      expect(sum(m, 'stream_leaks_total', { route, kind: 'buffered_stream' })).toBe(1);
    }
  }, 30_000);

  it('the same stream with res.flush() after each event, and a compressed JSON response, raise nothing; the flushed stream first byte follows its first write', async () => {
    const [flushed, json] = await Promise.all([read(ports.inner, '/sse-flush', true), read(ports.inner, '/json', true)]);
    expect(flushed.encoding).toBe('gzip');
    expect(json.encoding).toBe('gzip');
    expect(flushed.body.match(/^data: /gm)).toHaveLength(20);
    await new Promise((r) => setTimeout(r, 1500)); // a sweep or more past bufferedAfterMs after the stream ended
    const fs = await findings(ports.inner);
    expect(fs.filter((f) => f.route === '/sse-flush' || f.route === '/json')).toEqual([]);
    const m = await metrics(ports.inner);
    const flushedGap = mean(m, 'stream_first_byte_seconds', '/sse-flush') - mean(m, 'stream_first_write_seconds', '/sse-flush');
    const heldGap = mean(m, 'stream_first_byte_seconds', '/sse') - mean(m, 'stream_first_write_seconds', '/sse');
    expect(flushedGap).toBeGreaterThanOrEqual(0);
    expect(flushedGap, `flushed ${flushedGap} s, held ${heldGap} s`).toBeLessThan(heldGap / 2);
  }, 30_000);

  it('Fastify 5 + @fastify/compress compressing a stream payload of text/event-stream: found, naming Content-Encoding and the piped body; compressed JSON raises nothing', async () => {
    const [sse, json] = await Promise.all([read(ports.fastify, '/f/sse', true), read(ports.fastify, '/f/json', true)]);
    expect(sse.encoding).toBe('gzip');
    expect(json.encoding).toBe('gzip');
    expect(sse.body.match(/^data: /gm)).toHaveLength(20);
    const fs = await findings(ports.fastify);
    const found = buffered(fs, '/f/sse');
    expect(found, JSON.stringify(fs)).toHaveLength(1);
    expect(found[0]!.detail).toMatch(/Content-Encoding: gzip/);
    expect(found[0]!.detail).toMatch(/piped into the response/);
    expect(found[0]!.detail).toMatch(/customTypes/);
    expect(fs.filter((f) => f.route === '/f/json')).toEqual([]);
    const m = await metrics(ports.inner); // one process, one global registry
    const firstWrite = mean(m, 'stream_first_write_seconds', '/f/sse');
    const firstByte = mean(m, 'stream_first_byte_seconds', '/f/sse');
    expect(firstByte - firstWrite, `first write ${firstWrite} s, first byte ${firstByte} s`).toBeGreaterThan(1.0);
  }, 30_000);
});

describe('gaps between writes (packed tarball)', () => {
  it('a producer that pauses 2 s once shows a longest gap of 2 s (± 0.3 s); with writeGaps every gap is in stream_write_gap_seconds; a heartbeat-only stream raises nothing', async () => {
    const [pause, hb] = await Promise.all([read(ports.inner, '/pause', false), read(ports.inner, '/heartbeat', false)]);
    expect(pause.encoding).toBeUndefined();
    expect(pause.body.match(/^data: /gm)).toHaveLength(20);
    expect(hb.body.match(/^: heartbeat/gm)).toHaveLength(12);
    const m = await metrics(ports.inner);
    const longest = mean(m, 'stream_longest_write_gap_seconds', '/pause');
    expect(Math.abs(longest - 2), `longest gap ${longest} s`).toBeLessThanOrEqual(0.3);
    // heartbeats every 250 ms: the longest gap is about that, nowhere near the pause
    expect(mean(m, 'stream_longest_write_gap_seconds', '/heartbeat')).toBeLessThan(1);
    // writeGaps: 20 writes, 19 gaps, one of them the pause
    expect(sum(m, 'stream_write_gap_seconds_count', { route: '/pause' })).toBe(19);
    expect(sum(m, 'stream_write_gap_seconds_bucket', { route: '/pause', le: '1' })).toBe(18);
    expect(sum(m, 'stream_write_gap_seconds_bucket', { route: '/pause', le: '+Inf' })).toBe(19);
    // only the opted-in route has the per-gap series
    expect(m.filter((s) => s.name.startsWith('stream_write_gap_seconds') && s.labels.route !== '/pause')).toEqual([]);
    const fs = await findings(ports.inner);
    expect(fs.filter((f) => f.route === '/pause' || f.route === '/heartbeat')).toEqual([]);
  }, 30_000);
});
