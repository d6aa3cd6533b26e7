/**
 * `diag analyze` on hostile capture directories, through the built CLI, run as root (the case that
 * matters): nothing is read or written through a symlink, a directory another user owns or can write is
 * refused, a FIFO or a deeply nested JSON file is one line and exit 2, never a hang or an internal error.
 * See docs/security.md ("Capture directories").
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, runCli } from './fixtures/servers/harness.js';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const NOBODY = 65534;
let base: string;
/** Root-owned files an attacker would like root to overwrite or to leak. */
let rootFile: string;
let secretFile: string;
const ROOT_TEXT = 'root-owned file; must not change\n';
const SECRET = 'TOPSECRET-7f3a9c';

const streamsJson = JSON.stringify({
  streams: [{ id: 1, route: '/a', method: 'GET', startedAt: 0, ageMs: 10, bufferedBytes: 0, findings: [] }],
  findings: [],
});

function capture(name: string, opts: { mode?: number; owner?: number } = {}): string {
  const dir = path.join(base, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'streams.json'), streamsJson, { mode: 0o600 });
  fs.chmodSync(dir, opts.mode ?? 0o700);
  if (opts.owner !== undefined) {
    fs.chownSync(path.join(dir, 'streams.json'), opts.owner, opts.owner);
    fs.chownSync(dir, opts.owner, opts.owner);
  }
  return dir;
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^diag: /);
  expect(stderr).not.toMatch(/\n\s+at |internal error/);
  return lines[0]!;
}

function unchanged(): void {
  expect(fs.readFileSync(rootFile, 'utf8')).toBe(ROOT_TEXT);
  expect(fs.statSync(rootFile).mode & 0o777).toBe(0o644);
  expect(fs.readFileSync(secretFile, 'utf8')).toBe(SECRET);
  expect(fs.statSync(secretFile).mode & 0o777).toBe(0o600);
}

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'sec-analyze-'));
  fs.chmodSync(base, 0o755); // another user may enter it (to own a directory inside)
  rootFile = path.join(base, 'root-file');
  fs.writeFileSync(rootFile, ROOT_TEXT);
  fs.chmodSync(rootFile, 0o644);
  secretFile = path.join(base, 'root-secret');
  fs.writeFileSync(secretFile, SECRET);
  fs.chmodSync(secretFile, 0o600);
});
afterAll(async () => {
  await killAll();
  fs.rmSync(base, { recursive: true, force: true });
});

describe.runIf(isRoot)('diag analyze as root on a directory another user made', () => {
  it('refuses it: report.json linked to a root file stays a link, the file keeps its content and mode', async () => {
    const dir = capture('foreign', { owner: NOBODY });
    fs.symlinkSync(rootFile, path.join(dir, 'report.json'));
    fs.lchownSync(path.join(dir, 'report.json'), NOBODY, NOBODY);
    const r = await runCli(['analyze', dir]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/belongs to uid 65534.*refusing/);
    expect(r.stdout).toBe('');
    expect(fs.lstatSync(path.join(dir, 'report.json')).isSymbolicLink()).toBe(true);
    unchanged();
  });

  it('refuses it: a manifest.json linked to a root-only file is never read, its content appears nowhere', async () => {
    const dir = capture('foreign-manifest', { owner: NOBODY });
    fs.symlinkSync(secretFile, path.join(dir, 'manifest.json'));
    fs.lchownSync(path.join(dir, 'manifest.json'), NOBODY, NOBODY);
    const r = await runCli(['analyze', dir, '--json']);
    expect(r.code).toBe(2);
    oneLine(r.stderr);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
    expect(fs.readdirSync(dir).sort()).toEqual(['manifest.json', 'streams.json']); // no report.json written
    unchanged();
  });

  it('refuses a file another user owns inside a directory of root’s', async () => {
    const dir = capture('foreign-file');
    fs.chownSync(path.join(dir, 'streams.json'), NOBODY, NOBODY);
    const r = await runCli(['analyze', dir]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/streams\.json belongs to uid 65534/);
  });
});

describe.runIf(isRoot)('diag analyze on a directory of its own user', () => {
  it('never reads a linked manifest.json, and replaces a linked report.json instead of writing through it', async () => {
    const dir = capture('own-links');
    fs.symlinkSync(secretFile, path.join(dir, 'manifest.json'));
    fs.symlinkSync(rootFile, path.join(dir, 'report.json'));
    const r = await runCli(['analyze', dir, '--json']);
    expect(r.code).toBe(2); // the rest is analyzed; the refused file makes it exit 2
    expect(oneLine(r.stderr)).toMatch(/manifest\.json is a symbolic link; refusing to follow it/);
    expect(JSON.parse(r.stdout).summary.streams).toBe(1);
    expect(r.stdout).not.toContain(SECRET);
    const report = path.join(dir, 'report.json');
    expect(fs.lstatSync(report).isFile()).toBe(true);
    expect(fs.statSync(report).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(report, 'utf8')).not.toContain(SECRET);
    unchanged();
  });

  it('--html FILE replaces a link at FILE, never writes through it', async () => {
    const dir = capture('own-html');
    const html = path.join(base, 'report.html');
    fs.symlinkSync(rootFile, html);
    const r = await runCli(['analyze', dir, '--html', html]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(fs.lstatSync(html).isFile()).toBe(true);
    expect(fs.statSync(html).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(html, 'utf8')).toMatch(/^<!doctype html>/i);
    unchanged();
  });

  it('a FIFO in the capture: exit 2 at once with one line, no hang', async () => {
    const dir = capture('fifo');
    execFileSync('mkfifo', [path.join(dir, 'manifest.json')]);
    const r = await runCli(['analyze', dir], {}, os.tmpdir(), 15_000);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/manifest\.json is not a regular file/);
  });

  it('a deeply nested manifest.json or streams.json: exit 2 with one line, not an internal error', async () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const dir = capture('deep');
    fs.writeFileSync(path.join(dir, 'manifest.json'), `{"version":1,"x":${deep}}`);
    const r = await runCli(['analyze', dir]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/manifest\.json is nested deeper than 256 levels/);

    const dir2 = capture('deep-streams');
    fs.writeFileSync(path.join(dir2, 'streams.json'), `{"streams":[{"id":1,"x":${deep}}]}`);
    const r2 = await runCli(['analyze', dir2]);
    expect(r2.code).toBe(2);
    expect(oneLine(r2.stderr)).toMatch(/streams\.json is nested deeper than 256 levels/);
    // a single deeply nested file too
    const r3 = await runCli(['analyze', path.join(dir2, 'streams.json')]);
    expect(r3.code).toBe(2);
    expect(oneLine(r3.stderr)).toMatch(/nested deeper/);
  });

  it('refuses a group- or world-writable directory, and one inside a world-writable, non-sticky parent', async () => {
    for (const [name, m] of [['group-w', 0o770], ['world-w', 0o777]] as const) {
      const dir = capture(name, { mode: m });
      fs.symlinkSync(rootFile, path.join(dir, 'report.json'));
      const r = await runCli(['analyze', dir]);
      expect(r.code).toBe(2);
      expect(oneLine(r.stderr)).toMatch(/another user can write it; refusing/);
      expect(fs.lstatSync(path.join(dir, 'report.json')).isSymbolicLink()).toBe(true);
    }
    const open = path.join(base, 'open-parent');
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777);
    const inner = path.join(open, 'cap');
    fs.mkdirSync(inner, { mode: 0o700 });
    fs.writeFileSync(path.join(inner, 'streams.json'), streamsJson);
    const r = await runCli(['analyze', inner]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/inside .*open-parent.*another user can write/);
    unchanged();
  });

  it('healthy: a private capture of its own user is analyzed and report.json written 0600', async () => {
    const dir = capture('healthy');
    const r = await runCli(['analyze', dir, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).summary.streams).toBe(1);
    expect(fs.statSync(path.join(dir, 'report.json')).mode & 0o777).toBe(0o600);
    // and no temp file is left behind
    expect(fs.readdirSync(dir).sort()).toEqual(['report.json', 'streams.json']);
  });
});
