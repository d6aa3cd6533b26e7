/**
 * One leak is one finding (issue 20, item 2): `diag analyze` (the BUILT CLI) groups retained objects by the place
 * in the program that holds them, not by the whole retainer path. A real child process
 * (test/fixtures/heap/interval-holder.mjs) holds five responses of closed connections with one never-cleared
 * interval's closure, and keeps the Timeouts in an array too: four shortest paths run through the timer list, one
 * through the array. Two genuinely different holders (two closures, two files) stay two findings.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from './fixtures/servers/harness.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures/heap');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'heap-holder-'));

interface HeapFindingJson {
  source: string;
  kind: string;
  count: number;
  path: string[];
  rawPath: string[];
  holder?: string;
  alsoVia?: Array<{ count: number; path: string[]; rawPath: string[] }>;
}

function snapshot(mode: 'same' | 'two' | 'table'): string {
  const file = path.join(work, `${mode}.heapsnapshot`);
  execFileSync(process.execPath, [path.join(FIXTURES, 'interval-holder.mjs'), mode, file], { cwd: work, timeout: 60_000 });
  return file;
}

function cli(...args: string[]): string {
  return execFileSync(process.execPath, [CLI, 'analyze', ...args], { encoding: 'utf8', maxBuffer: 1 << 26, timeout: 120_000 });
}

function lineOf(file: string, text: string): number {
  return fs.readFileSync(path.join(FIXTURES, file), 'utf8').split('\n').findIndex((l) => l.includes(text)) + 1;
}

beforeAll(() => {
  expect(fs.existsSync(CLI)).toBe(true); // npm run build first
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('one interval closure holding five responses, its Timeouts also kept in an array', () => {
  let file: string;
  let findings: HeapFindingJson[];
  const tick = lineOf('interval-holder.mjs', 'function tick()');
  beforeAll(() => {
    file = snapshot('same');
    findings = (JSON.parse(cli(file, '--json')) as { findings: HeapFindingJson[] }).findings;
  });

  it.each(['retained_response', 'retained_request', 'retained_socket'])('%s: one finding ×5, held by tick() at its file:line', (kind) => {
    const mine = findings.filter((f) => f.kind === kind);
    expect(mine.map((f) => f.count)).toEqual([5]);
    const f = mine[0]!;
    expect(f.holder).toMatch(new RegExp(`^tick\\(\\) file://\\S*interval-holder\\.mjs:${tick}:\\d+ \\{res\\}$`));
    expect(f.path).toContain(f.holder);
    // the two ways the five are reached: the path most share (through the timer list), the other kept beside it
    expect(f.path[0]).toBe('active timer');
    expect(f.alsoVia).toHaveLength(1);
    const also = f.alsoVia![0]!;
    expect(f.count).toBe(also.count + 4);
    expect(also.path).toEqual(expect.arrayContaining(['timers', 'Array', '[]', 'Timeout', '_onTimeout', f.holder]));
    // raw paths, as V8 records them, for both
    expect(f.rawPath).toEqual(expect.arrayContaining(['TimersList', 'Timeout', '_onTimeout', 'tick()']));
    expect(also.rawPath).toEqual(expect.arrayContaining(['timers', 'Array', '[]', 'Timeout', '_onTimeout', 'tick()']));
    expect(also.rawPath).not.toContain('TimersList');
  });

  it('the text report prints one retained_response ×5 with the array path as "also reachable through"', () => {
    const out = cli(file);
    expect(out.match(/retained_response ×\d+/g)).toEqual(['retained_response ×5']);
    const lines = out.split('\n');
    const at = lines.findIndex((l) => l.includes('retained_response ×5'));
    expect(lines[at + 1]).toMatch(new RegExp(`^\\s+active timer → _onTimeout → tick\\(\\) file://\\S*interval-holder\\.mjs:${tick}:\\d+ \\{res\\} → res → ServerResponse \\(×4\\)$`));
    expect(lines[at + 2]).toMatch(/^\s+also reachable through \(×1\): .* → timers → Array → \[\] → Timeout → _onTimeout → tick\(\) \S+interval-holder\.mjs:\d+:\d+ \{res\} → res → ServerResponse$/);
  });

  it('the HTML report shows the other path under the same finding', () => {
    const html = path.join(work, 'same.html');
    cli(file, '--html', html);
    const rows = fs.readFileSync(html, 'utf8').match(/<tr class="finding" data-kind="retained_response">.*?<\/tr>/g) ?? [];
    expect(rows).toHaveLength(1);
    expect(rows[0]).toContain('<td>5</td>');
    expect(rows[0]).toMatch(/also reachable through \(×1\): .*timers/);
  });
});

describe('two different holders stay two findings', () => {
  it('tick() in one file ×3 and poll() in another ×2, their Timeouts in one array', () => {
    const file = snapshot('two');
    const { findings } = JSON.parse(cli(file, '--json')) as { findings: HeapFindingJson[] };
    const poll = lineOf('interval-holder-other.mjs', 'function poll()');
    const tick = lineOf('interval-holder.mjs', 'function tick()');
    for (const kind of ['retained_response', 'retained_request', 'retained_socket']) {
      const mine = findings.filter((f) => f.kind === kind);
      const byHolder = Object.fromEntries(mine.map((f) => [f.holder!.replace(/ .*/, ''), f]));
      expect(Object.keys(byHolder).sort()).toEqual(['poll()', 'tick()']);
      expect(byHolder['tick()']!.count).toBe(3);
      expect(byHolder['poll()']!.count).toBe(2);
      expect(byHolder['tick()']!.holder).toMatch(new RegExp(`interval-holder\\.mjs:${tick}:\\d+ `));
      expect(byHolder['poll()']!.holder).toMatch(new RegExp(`interval-holder-other\\.mjs:${poll}:\\d+ `));
    }
  });
});

describe('a plain object used as a table', () => {
  it('four responses, each under its own key, are one finding ×4 held by the object, with one path', () => {
    const file = snapshot('table');
    const { findings } = JSON.parse(cli(file, '--json')) as { findings: HeapFindingJson[] };
    const mine = findings.filter((f) => f.kind === 'retained_response');
    expect(mine.map((f) => f.count)).toEqual([4]);
    // what holds the table (here the request handler's closure, which uses the module's `sessions`), and the table
    expect(mine[0]!.holder).toMatch(/interval-holder\.mjs.* → sessions → Object$/);
    // a table's keys are not other ways to it
    expect(mine[0]!.alsoVia).toBeUndefined();
  });
});
