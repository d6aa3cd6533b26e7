/**
 * The `diag` entry point: usage errors are one line on stderr and exit code 2 (never a stack trace),
 * --help and --version exit 0, and `diag doctor` explains how to get @clinic/doctor when it is missing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { unsupportedNode } from '../diagnostics/commands/doctor.js';
import { CLI, ROOT, killAll, runCli } from './fixtures/servers/harness.js';

afterAll(killAll);

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  return lines[0] as string;
}

describe('diag usage', () => {
  it('is built as an executable with a shebang, and package.json bin points at it', () => {
    expect(fs.readFileSync(CLI, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin: { diag: string } };
    expect(path.resolve(ROOT, pkg.bin.diag)).toBe(CLI);
  });

  it('--version and --help exit 0', async () => {
    const v = await runCli(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const h = await runCli(['--help']);
    expect(h.code).toBe(0);
    for (const cmd of ['ls', 'top', 'capture', 'analyze', 'doctor']) expect(h.stdout).toContain(cmd);
  });

  it('no command is bad usage: help on stderr, exit 2', async () => {
    const r = await runCli([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage: diag');
  });

  const cases: Array<[string[], RegExp]> = [
    [['bogus'], /^diag: unknown command 'bogus'$/],
    [['capture'], /^diag: missing required argument 'pid'$/],
    [['capture', 'abc'], /^diag: "abc" is not a process id$/],
    [['capture', '0'], /^diag: "0" is not a process id$/],
    [['capture', '12', '--trace', '-5'], /^diag: --trace must be a number of seconds in \(0, 600\], got "-5"$/],
    [['capture', '12', '--cpu', 'soon'], /^diag: --cpu must be a number of seconds in \(0, 600\], got "soon"$/],
    [['capture', '12', '--via', 'ssh'], /^diag: option '--via <transport>' argument 'ssh' is invalid/],
    [['capture', '4194303'], /^diag: no process with pid 4194303$/],
    [['top', '4194303'], /^diag: no process with pid 4194303$/],
    [['top', '1', '--sort', 'name'], /^diag: option '--sort <key>' argument 'name' is invalid/],
    [['analyze', '/nonexistent/capture'], /^diag: /],
    [['analyze', '.', '--fail-on', 'info'], /^diag: option '--fail-on <level>' argument 'info' is invalid/],
    [['doctor'], /^diag: usage: diag doctor -- <command \.\.\.>/],
  ];
  for (const [args, line] of cases) {
    it(`diag ${args.join(' ')} → one line, exit 2`, async () => {
      const r = await runCli(args);
      expect(r.code).toBe(2);
      expect(oneLine(r.stderr)).toMatch(line);
    });
  }

  it('diag top on a process without the agent says how to start it', async () => {
    const r = await runCli(['top', String(process.pid)], { STREAMSCOPE_AGENT_DIR: '/nonexistent/agents' });
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toBe(`diag: pid ${process.pid} runs no streamscope agent; diag top needs it (start the app with --import streamscope/register)`);
  });
});

describe('diag doctor', () => {
  it('says how to install @clinic/doctor when it is missing (exit 2), with its Node version note', async () => {
    const r = await runCli(['doctor', '--', process.execPath, '-e', '1']);
    expect(r.code).toBe(2);
    const line = oneLine(r.stderr);
    expect(line).toMatch(/^diag: diag doctor needs @clinic\/doctor, which is not installed: npm install --save-dev @clinic\/doctor/);
    if (unsupportedNode()) expect(line).toContain('fails on Node >= 21.7');
    else expect(line).not.toContain('fails on Node');
  });

  it('knows which Node versions @clinic/doctor fails on (>= 21.7)', () => {
    expect(['20.20.2', '21.6.9', '21.7.0', '22.1.0', '24.0.0'].map((v) => unsupportedNode(v))).toEqual([false, false, true, true, true]);
  });
});
