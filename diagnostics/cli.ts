/**
 * `diag`: capture a live Node.js process and explain it. See docs/diag.md and the contract (DESIGN.md, "`diag` CLI").
 * Exit codes: 0 done, 1 findings at or above --fail-on, 2 bad usage or unreadable input (one line on stderr).
 */
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { VERSION } from '../src/consumers/agent/protocol.js';
import { runAnalyze } from './commands/analyze.js';
import { runCapture } from './commands/capture.js';
import { runDoctor } from './commands/doctor.js';
import { runLs } from './commands/ls.js';
import { runTop, type SortKey } from './commands/top.js';
import { errorLine } from './errors.js';

let exitCode = 0;

/** Runs a command; any error is one line on stderr and exit code 2. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      exitCode = await fn(...args);
    } catch (err) {
      if (process.env.DIAG_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
      process.stderr.write(`${NAME}: ${errorLine(err)}\n`);
      exitCode = 2;
    }
  };
}

/** The bin it runs as: `streamscope` (the package's name, safe with npx from anywhere) or its short name `diag`. */
const NAME = /^streamscope(\.js)?$/.test(path.basename(process.argv[1] ?? '')) ? 'streamscope' : 'diag';

const program = new Command(NAME)
  .description('capture a live Node.js process (streams, heap, trace, CPU) and explain it')
  .version(VERSION)
  .showHelpAfterError(false)
  .enablePositionalOptions()
  .exitOverride()
  .configureOutput({
    writeErr: (s) => process.stderr.write(s),
    outputError: (s, write) => write(`${NAME}: ${s.replace(/^error: /, '').trim()}\n`),
  });

program
  .command('ls')
  .description('Node.js processes on this host that run the streamscope agent')
  .option('--json', 'print JSON')
  .action(action((opts: { json?: boolean }) => runLs(opts)));

program
  .command('top')
  .description("live table of a process's open streams, refreshed in place (s: sort, q: quit)")
  .argument('<pid>')
  .option('--once', 'print one frame and exit')
  .addOption(new Option('--sort <key>', 'sort by').choices(['age', 'buffered']).default('age'))
  .option('--interval <ms>', 'refresh interval', '1000')
  .action(action((pid: string, opts: { once?: boolean; sort: SortKey; interval: string }) => runTop(pid, { once: opts.once, sort: opts.sort, interval: Number(opts.interval) })));

program
  .command('capture')
  .description('capture streams, process facts and optionally a heap snapshot, trace and CPU profile')
  .argument('<pid>')
  .option('--out <dir>', 'capture directory (default ./streamscope-capture-<pid>-<timestamp>)')
  .option('--heap', 'take a heap snapshot (pauses the target)')
  .option('--heap-profile <seconds>', "record a sampled heap profile (allocation sites of live memory; no pause worth naming)")
  .option('--trace <seconds>', 'record trace events')
  .option('--cpu <seconds>', 'record a CPU profile')
  .addOption(new Option('--via <transport>', 'agent socket or V8 inspector (default: agent when running)').choices(['agent', 'inspector']))
  .option('--max-pause <seconds>', 'refuse a heap snapshot whose estimated pause is longer (default 2)')
  .option('--force', 'take the heap snapshot even when free memory looks too low or the pause too long')
  .action(
    action((pid: string, opts: { out?: string; heap?: boolean; heapProfile?: string; trace?: string; cpu?: string; via?: 'agent' | 'inspector'; maxPause?: string; force?: boolean }) =>
      runCapture(pid, {
        out: opts.out,
        heap: opts.heap,
        heapProfile: opts.heapProfile as unknown as number,
        trace: opts.trace as unknown as number,
        cpu: opts.cpu as unknown as number,
        via: opts.via,
        maxPause: opts.maxPause as unknown as number,
        force: opts.force,
      }),
    ),
  );

program
  .command('analyze')
  .description('analyze a capture directory, heap snapshot, trace or streams.json')
  .argument('<target>', 'DIR | FILE.heapsnapshot | FILE.json')
  .option('--json', 'print the JSON report')
  .option('--html <file>', 'write a self-contained HTML report')
  .addOption(new Option('--fail-on <level>', 'exit 1 on findings at or above this level').choices(['warning', 'error']))
  .option('--base <capture>', 'an earlier capture (or .heapprofile) of the same process: list the allocation sites that grew since')
  .action(action((target: string, opts: { json?: boolean; html?: string; failOn?: 'warning' | 'error'; base?: string }) => runAnalyze(target, opts)));

program
  .command('doctor')
  .description('run a command under Clinic.js Doctor (optional dependency @clinic/doctor)')
  .argument('[command...]', 'the command, after --')
  .passThroughOptions()
  .allowUnknownOption()
  .action(action((command: string[]) => runDoctor(command ?? [])));

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version are done; anything else (no command, unknown command, bad option) is bad usage
      exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2;
    } else {
      process.stderr.write(`${NAME}: ${errorLine(err)}\n`);
      exitCode = 2;
    }
  }
  process.stdout.write('', () => process.exit(exitCode));
}

void main();
