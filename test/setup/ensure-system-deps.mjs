#!/usr/bin/env node
// `npm test` runs this first: the tests start a real prometheus, redis-server and Chromium, and drive
// a terminal with tmux. On a fresh Debian machine run as root, it installs the missing ones with
// apt-get; elsewhere it says exactly what to install and stops (exit 1) instead of failing later.
import { execFileSync, spawnSync } from 'node:child_process';

const needs = [
  ['prometheus', 'prometheus'],
  ['promtool', 'prometheus'],
  ['redis-server', 'redis-server'],
  ['chromium', 'chromium'],
  ['tmux', 'tmux'],
];
const has = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
const missing = [...new Set(needs.filter(([bin]) => !has(bin)).map(([, pkg]) => pkg))];
if (missing.length === 0) process.exit(0);

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!isRoot || !has('apt-get')) {
  console.error(`streamscope tests need these Debian packages: ${missing.join(' ')}\n  sudo apt-get install -y --no-install-recommends ${missing.join(' ')}`);
  process.exit(1);
}
console.error(`installing ${missing.join(' ')} with apt-get (needed by the tests)…`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing, 'fonts-dejavu-core'], { stdio: 'inherit', env });
