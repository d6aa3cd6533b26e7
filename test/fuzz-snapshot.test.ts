// Fuzz suite: mutations of a real heap snapshot (truncated, bytes flipped, ranges deleted or duplicated,
// wrong meta, huge numbers, not JSON at all) fed to `diag analyze` in a child process. It must always exit
// 0, 1 or 2 within the timeout, and on 2 print exactly one `diag: …` line and no stack trace.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.join(import.meta.dirname, '..');
let dir: string;
let cli: string;
let original: Buffer;
let sections: { nodes: number; edges: number; strings: number };

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-snapshot-'));
  const snap = path.join(dir, 'small.heapsnapshot');
  execFileSync(process.execPath, ['-e', `require('v8').writeHeapSnapshot(${JSON.stringify(snap)})`], { cwd: dir, timeout: 30_000 });
  original = fs.readFileSync(snap);
  const text = original.toString('latin1');
  sections = { nodes: text.indexOf('"nodes":['), edges: text.indexOf('"edges":['), strings: text.indexOf('"strings":[') };
  // the analyzer as one file, started the way the bundled CLI is (no TypeScript loader per case)
  cli = path.join(dir, 'analyze.mjs');
  execFileSync(path.join(root, 'node_modules/.bin/esbuild'), [
    path.join(root, 'test/fixtures/heap/analyze-main.ts'),
    '--bundle',
    '--platform=node',
    '--format=esm',
    `--outfile=${cli}`,
    '--log-level=warning',
  ]);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The bundled `diag` CLI once it has `analyze` (npm test builds it first), else the analyzer's own bundle. */
function runner(): string[] {
  const real = path.join(root, 'dist/diagnostics/cli.js');
  if (fs.existsSync(real) && fs.readFileSync(real, 'utf8').includes('runAnalyze')) return [real, 'analyze'];
  return [cli];
}

function analyze(file: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...runner(), file, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000, killSignal: 'SIGKILL' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
  });
}

function check(r: Run, what: string): void {
  const where = `${what}: exit ${r.code} ${r.signal ?? ''} ${r.stderr.slice(0, 300)}`;
  expect(r.signal, where).toBeNull(); // not killed by the timeout: no hang
  expect([0, 1, 2], where).toContain(r.code);
  expect(r.stderr, where).not.toMatch(/\n\s+at |Error:|node:internal/);
  if (r.code === 2) {
    expect(r.stderr, where).toMatch(/^diag: [^\n]+\n$/);
    expect(r.stderr, where).not.toContain('internal error'); // bad input is named as such, never a crash in disguise
    expect(r.stdout, where).toBe('');
  } else {
    expect(r.stderr, where).toBe('');
    expect(JSON.parse(r.stdout).version, where).toBe(1);
  }
}

type Mutation = { name: string; apply: (b: Buffer) => Buffer };

const size = () => original.length;
const within = (from: number, to: number) => fc.integer({ min: from, max: Math.max(from, to - 1) });

function mutations(): fc.Arbitrary<Mutation> {
  const N = size();
  const truncate = fc.integer({ min: 0, max: N - 1 }).map((n) => ({ name: `truncate at ${n}`, apply: (b: Buffer) => b.subarray(0, n) }));
  const flip = fc
    .array(fc.tuple(fc.oneof(within(0, 2048), within(sections.nodes, sections.strings), within(0, N)), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 12 })
    .map((flips) => ({
      name: `flip ${flips.map(([at, v]) => `${at}=${v}`).join(',')}`,
      apply: (b: Buffer) => {
        const c = Buffer.from(b);
        for (const [at, v] of flips) c[at] = v;
        return c;
      },
    }));
  const del = fc.tuple(within(0, N), fc.integer({ min: 1, max: 200_000 })).map(([at, len]) => ({
    name: `delete ${len} at ${at}`,
    apply: (b: Buffer) => Buffer.concat([b.subarray(0, at), b.subarray(Math.min(N, at + len))]),
  }));
  const dup = fc.tuple(within(0, N), fc.integer({ min: 1, max: 200_000 }), within(0, N)).map(([at, len, to]) => ({
    name: `duplicate ${len} from ${at} to ${to}`,
    apply: (b: Buffer) => Buffer.concat([b.subarray(0, to), b.subarray(at, Math.min(N, at + len)), b.subarray(to)]),
  }));
  const metaEdits: Array<[RegExp, string]> = [
    [/"node_count":\d+/, '"node_count":99999999999'],
    [/"node_count":\d+/, '"node_count":0'],
    [/"node_count":\d+/, '"node_count":-5'],
    [/"edge_count":\d+/, '"edge_count":1'],
    [/"edge_count":\d+/, '"edge_count":"many"'],
    [/"node_fields":\[[^\]]*\]/, '"node_fields":["name","type"]'],
    [/"node_fields":\[/, '"node_fields":["extra",'],
    [/"edge_fields":\[[^\]]*\]/, '"edge_fields":[]'],
    [/"edge_types":\[\[/, '"edge_types":[["a","b","c","d","e","f","g","h","i"],['],
    [/"node_types":\[\[/, '"node_types":[['],
    [/"meta":/, '"mets":'],
    [/"snapshot":\{/, '"snapshot":{"meta":1,"x":{'],
    [/"strings":\[/, '"strings":[1,'],
    [/"nodes":\[/, '"nodes":{'],
  ];
  const meta = fc.constantFrom(...metaEdits).map(([re, to]) => ({
    name: `meta ${re} -> ${to}`,
    apply: (b: Buffer) => Buffer.from(b.toString('latin1').replace(re, to), 'latin1'),
  }));
  const huge = fc.tuple(within(sections.nodes + 10, sections.strings), fc.constantFrom('99999999999999999999', '4294967296', '1e308', '-1', '1.5', '00000000000000000000000000')).map(([at, n]) => ({
    name: `insert ${n} at ${at}`,
    apply: (b: Buffer) => {
      // put the number right after the next comma, so it lands on a value
      const comma = b.indexOf(0x2c, at);
      const p = comma < 0 ? at : comma + 1;
      return Buffer.concat([b.subarray(0, p), Buffer.from(`${n},`), b.subarray(p)]);
    },
  }));
  const garbage = fc.uint8Array({ minLength: 0, maxLength: 5000 }).map((bytes) => ({ name: `${bytes.length} random bytes`, apply: () => Buffer.from(bytes) }));
  const notSnapshot = fc.constantFrom('', '{}', '[]', 'null', '{"snapshot":{}}', '{"snapshot":{"meta":{}},"nodes":[],"edges":[],"strings":[]}', '{"traceEvents":5}').map((t) => ({
    name: `text ${t}`,
    apply: () => Buffer.from(t),
  }));
  return fc.oneof(truncate, flip, flip, del, dup, meta, huge, garbage, notSnapshot);
}

describe('diag analyze on mutated snapshots', () => {
  it('the unmutated snapshot analyzes cleanly', async () => {
    const f = path.join(dir, 'ok.heapsnapshot');
    fs.writeFileSync(f, original);
    const r = await analyze(f);
    check(r, 'original');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).summary.heap.nodes).toBeGreaterThan(1000);
  });

  it('never crashes, hangs or prints a stack trace (120 mutations)', async () => {
    const f = path.join(dir, 'mutant.heapsnapshot');
    const codes = { 0: 0, 1: 0, 2: 0 } as Record<number, number>;
    await fc.assert(
      fc.asyncProperty(mutations(), async (m) => {
        fs.writeFileSync(f, m.apply(original));
        const r = await analyze(f);
        check(r, m.name);
        codes[r.code!]++;
      }),
      { numRuns: 120, seed: Number(process.env.FUZZ_SEED ?? 4242), endOnFailure: true },
    );
    // most mutations are rejected, some (inside strings) still analyze: both paths were exercised
    expect(codes[2]).toBeGreaterThan(30);
  }, 240_000);
});
