import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');

// A registry whose registerMetric throws: streamscope swallows the fault (the app streams on) and counts it.
const script = `
const http = require('node:http');
const { instrument, internalErrors } = require(${JSON.stringify(join(root, 'dist/cjs/index.cjs'))});
const registry = { registerMetric() { throw new Error('boom from the registry'); }, getSingleMetric() {} };
const h = instrument((req, res) => { res.end('ok'); }, { route: '/x', registry });
const server = http.createServer(h).listen(0, '127.0.0.1', async () => {
  const body = await (await fetch('http://127.0.0.1:' + server.address().port + '/')).text();
  console.log(JSON.stringify({ body, faults: internalErrors() }));
  server.close();
});
`;

describe('debug output', () => {
  it('NODE_DEBUG=streamscope prints each swallowed fault on stderr; without it stderr stays quiet', async () => {
    const on = await run(process.execPath, ['-e', script], { cwd: root, env: { ...process.env, NODE_DEBUG: 'streamscope' } });
    expect(JSON.parse(on.stdout)).toMatchObject({ body: 'ok', faults: { metrics: 1 } });
    expect(on.stderr).toMatch(/^STREAMSCOPE \d+: internal error in metrics: .*boom from the registry/m);
    const off = await run(process.execPath, ['-e', script], { cwd: root, env: { ...process.env, NODE_DEBUG: '' } });
    expect(JSON.parse(off.stdout)).toMatchObject({ body: 'ok', faults: { metrics: 1 } });
    expect(off.stderr).toBe('');
  });
});
