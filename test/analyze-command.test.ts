// `diag analyze` end to end on a capture directory made of real parts: a heap snapshot of a leaky server,
// a NodeTracing trace and a CPU profile of a child, streams.json with detector findings; and the HTML
// report opened in headless Chromium.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
import { runAnalyze } from '../diagnostics/commands/analyze.js';
import { createProgress } from '../diagnostics/progress.js';
import type { Finding, StreamSnapshot } from '../src/types.js';

let dir: string;
const fixtures = path.join(import.meta.dirname, 'fixtures/heap');

function stream(id: number, route: string, ageMs: number, bufferedBytes: number, findings: Finding['kind'][] = []): StreamSnapshot {
  return { id, route, method: 'GET', startedAt: Date.now() - ageMs, ageMs, firstWriteMs: 3, bytes: 100, writes: 4, blockedWrites: 0, blockedForMs: 0, bufferedBytes, clientClosed: findings.length > 0, ended: false, writesAfterClose: 0, traceId: '', findings };
}
function finding(streamId: number, kind: Finding['kind'], severity: Finding['severity'], at: number): Finding {
  return { kind, severity, streamId, route: '/leaky', method: 'GET', ageMs: 20_000, detail: `${kind} on ${streamId}`, at };
}

async function run(target: string, opts: Parameters<typeof runAnalyze>[1] = {}) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (d) => out.push(d));
  stderr.on('data', (d) => err.push(d));
  const code = await runAnalyze(target, opts, { stdout, stderr });
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'analyze-command-'));
  const cap = path.join(dir, 'capture');
  fs.mkdirSync(cap, { mode: 0o700 });
  execFileSync(process.execPath, [path.join(fixtures, 'leaky-server.mjs'), path.join(cap, 'heap.heapsnapshot')], { cwd: dir, timeout: 30_000 });
  execFileSync(process.execPath, [path.join(fixtures, 'trace-child.mjs'), cap], { timeout: 30_000 });
  const streams = [
    stream(1, '/leaky', 40_000, 70_000, ['dangling_stream']),
    stream(2, '/leaky', 20_000, 10_000),
    stream(3, '/feed/<img src=x onerror="document.title=1">', 5_000, 0),
  ];
  const findings = [finding(1, 'dangling_stream', 'error', 1), finding(1, 'dangling_stream', 'error', 2), finding(1, 'zombie_producer', 'warning', 3)];
  fs.writeFileSync(path.join(cap, 'streams.json'), JSON.stringify({ streams, findings }));
  fs.writeFileSync(
    path.join(cap, 'manifest.json'),
    JSON.stringify({ version: 1, pid: 4242, nodeVersion: process.version, time: new Date().toISOString(), transport: 'agent', files: ['streams.json', 'heap.heapsnapshot', 'trace.json', 'cpu.cpuprofile'] }),
  );
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('diag analyze DIR', () => {
  it('prints the contract JSON and writes report.json with mode 0600', async () => {
    const cap = path.join(dir, 'capture');
    const r = await run(cap, { json: true });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.version).toBe(1);
    expect(rep.summary.streams).toBe(3);
    expect(rep.summary.responses).toBe(rep.summary.heap.responses.total);
    expect(rep.summary.trace.longTasks.count).toBeGreaterThanOrEqual(2);
    // stream findings: one per stream and kind
    const sf = rep.findings.filter((f: { source: string }) => f.source === 'streams');
    expect(sf.map((f: Finding) => `${f.streamId}:${f.kind}`).sort()).toEqual(['1:dangling_stream', '1:zombie_producer']);
    const heap = rep.findings.filter((f: { source: string }) => f.source === 'heap');
    expect(heap.filter((f: { kind: string }) => f.kind === 'retained_response').reduce((s: number, f: { count: number }) => s + f.count, 0)).toBe(5);
    for (const f of heap) expect(Object.keys(f)).toEqual(expect.arrayContaining(['kind', 'severity', 'count', 'retainedSize', 'path', 'rawPath']));
    // trace findings carry no internal clock fields; a long task names where it ran
    for (const f of rep.findings.filter((x: { source: string }) => x.source === 'trace')) expect(Object.keys(f)).not.toContain('startUs');
    const timerBlock = rep.findings.find((f: { kind: string; detail: string }) => f.kind === 'long_task' && f.detail.includes('Timeout_CALLBACK'));
    expect(timerBlock.where?.[0]?.functionName).toBe('spin');
    const saved = path.join(cap, 'report.json');
    expect(fs.statSync(saved).mode & 0o777).toBe(0o600);
    expect(JSON.parse(fs.readFileSync(saved, 'utf8')).findings).toHaveLength(rep.findings.length);
  });

  it('sets the exit code from --fail-on', async () => {
    const cap = path.join(dir, 'capture');
    expect((await run(cap, { failOn: 'error' })).code).toBe(1);
    expect((await run(cap, { failOn: 'warning' })).code).toBe(1);
    const clean = path.join(dir, 'clean');
    fs.mkdirSync(clean);
    fs.writeFileSync(path.join(clean, 'streams.json'), JSON.stringify({ streams: [stream(9, '/ok', 100, 0)], findings: [] }));
    const r = await run(clean, { failOn: 'warning' });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('No findings.');
  });

  it('renders text with the retainer paths', async () => {
    const r = await run(path.join(dir, 'capture'));
    expect(r.stdout).toMatch(/retained_response ×3/);
    expect(r.stdout).toMatch(/active timer → _onTimeout → produce\(\) file:\/\/\S*leaky-server\.mjs:\d+:\d+ \{res\} → res → ServerResponse/);
    expect(r.stdout).toContain('hotLoop');
  });

  it('renders a self-contained HTML report that Chromium shows without console errors', async () => {
    const html = path.join(dir, 'report.html');
    const r = await run(path.join(dir, 'capture'), { html, json: true });
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    const text = fs.readFileSync(html, 'utf8');
    expect(text).not.toMatch(/(src|href)=["']?https?:/);
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-'));
    const browser = await chromium.launchPersistentContext(userDir, {
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
    });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
      });
      page.on('pageerror', (e) => problems.push(e.message));
      page.on('request', (q) => requests.push(q.url()));
      await page.goto(`file://${html}`);
      expect(await page.locator('tr.finding').count()).toBe(rep.findings.length);
      expect(await page.locator('tr.finding[data-kind="retained_response"]').count()).toBeGreaterThanOrEqual(2);
      expect(await page.locator('tr.finding .path').first().textContent()).toContain('ServerResponse');
      for (const title of ['Oldest stream age by route', 'Buffered bytes by route', 'Retained memory by constructor']) {
        expect(await page.locator(`figure:has(figcaption:text-is("${title}")) svg rect`).count()).toBeGreaterThan(0);
      }
      // names from the capture are text, never markup
      expect(await page.locator('img').count()).toBe(0);
      expect(await page.locator('svg text', { hasText: '/feed/<img src=x' }).count()).toBeGreaterThan(0);
      expect(problems).toEqual([]);
      expect(requests.every((u) => u.startsWith('file://'))).toBe(true);
      fs.mkdirSync(path.join(import.meta.dirname, '../test-artifacts'), { recursive: true });
      await page.screenshot({ path: path.join(import.meta.dirname, '../test-artifacts/analyze-report.png'), fullPage: true });
    } finally {
      await browser.close();
      fs.rmSync(userDir, { recursive: true, force: true });
    }
  });
});

describe('bad input: one line on stderr, exit 2', () => {
  const bad = async (target: string, opts = {}) => {
    const r = await run(target, opts);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^diag: /);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    return r.stderr;
  };
  it('missing path, empty directory, FIFO, non-snapshot, truncated snapshot, bad --fail-on', async () => {
    expect(await bad(path.join(dir, 'nope'))).toContain('no such file or directory');
    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    expect(await bad(empty)).toContain('not a capture directory');
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expect(await bad(fifo)).toContain('neither');
    const text = path.join(dir, 'x.json');
    fs.writeFileSync(text, '{"hello": 1}');
    expect(await bad(text)).toContain('not a heap snapshot, trace');
    const src = path.join(dir, 'capture/heap.heapsnapshot');
    const trunc = path.join(dir, 'trunc.heapsnapshot');
    fs.writeFileSync(trunc, fs.readFileSync(src).subarray(0, Math.floor(fs.statSync(src).size * 0.7)));
    expect(await bad(trunc)).toContain('truncated');
    expect(await bad(path.join(dir, 'capture'), { failOn: 'sometimes' })).toContain('--fail-on');
  });

  it('a capture whose heap step failed: the rest is analyzed and printed, the cut snapshot named, exit 2', async () => {
    const partial = path.join(dir, 'partial');
    fs.mkdirSync(partial);
    fs.copyFileSync(path.join(dir, 'capture/streams.json'), path.join(partial, 'streams.json'));
    const heap = fs.readFileSync(path.join(dir, 'capture/heap.heapsnapshot'));
    fs.writeFileSync(path.join(partial, 'heap.heapsnapshot'), heap.subarray(0, heap.length >> 1));
    const r = await run(partial, { json: true });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^diag: .*heap\.heapsnapshot.*truncated.*rest of the capture was analyzed\)\n$/);
    const rep = JSON.parse(r.stdout);
    expect(rep.summary.streams).toBe(3);
    expect(rep.summary.heap).toBeUndefined();
    expect(rep.incomplete).toHaveLength(1);
  });

  it('single files: a trace, a CPU profile, a streams.json', async () => {
    const t = await run(path.join(dir, 'capture/trace.json'), { json: true });
    expect(t.code).toBe(0);
    expect(JSON.parse(t.stdout).summary.trace.longTasks.count).toBeGreaterThanOrEqual(2);
    const c = await run(path.join(dir, 'capture/cpu.cpuprofile'), { json: true });
    expect(JSON.parse(c.stdout).summary.cpu.top.some((f: { functionName: string }) => f.functionName === 'hotLoop')).toBe(true);
    const s = await run(path.join(dir, 'capture/streams.json'), { failOn: 'error' });
    expect(s.code).toBe(1);
    expect(s.stdout).toContain('dangling_stream stream 1 GET /leaky');
  });
});

describe('progress bar', () => {
  const sink = (isTTY: boolean) => {
    const s = new PassThrough() as PassThrough & { isTTY: boolean; columns: number };
    s.isTTY = isTTY;
    s.columns = 80;
    const chunks: string[] = [];
    s.on('data', (d) => chunks.push(String(d)));
    return { s, chunks };
  };
  it('draws on a terminal and clears its line when done; writes nothing elsewhere', () => {
    const tty = sink(true);
    const p = createProgress('analyzing heap', tty.s as unknown as NodeJS.WriteStream);
    p.update(50, 100, 'reading');
    p.update(100, 100, 'reading');
    p.done();
    const out = tty.chunks.join('');
    expect(out).toContain('analyzing heap [###############---------------]  50 % reading');
    expect(out).toContain('100 %');
    expect(out.endsWith('\r\x1b[2K')).toBe(true);
    const pipe = sink(false);
    const q = createProgress('analyzing heap', pipe.s as unknown as NodeJS.WriteStream);
    q.update(50, 100);
    q.done();
    expect(pipe.chunks).toEqual([]);
  });
});
