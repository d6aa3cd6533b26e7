/**
 * `diag doctor -- <command ...>`: runs the command under Clinic.js Doctor (`@clinic/doctor`, an optional
 * dependency that diag never installs: it is heavy, unmaintained, targets Node 20 and fails on Node >= 21.7).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { DiagError } from '../errors.js';
import type { Io } from './capture.js';

const INSTALL = 'npm install --save-dev @clinic/doctor';

function resolveDoctor(): string | null {
  for (const base of [path.join(process.cwd(), 'noop.js'), import.meta.url]) {
    try {
      return createRequire(base).resolve('@clinic/doctor');
    } catch {
      /* try the next */
    }
  }
  return null;
}

/** Node >= 21.7, where @clinic/doctor no longer works. */
export function unsupportedNode(version = process.versions.node): boolean {
  const [major, minor] = version.split('.').map(Number) as [number, number];
  return major > 21 || (major === 21 && minor >= 7);
}

interface ClinicDoctor {
  collect(args: string[], cb: (err: Error | null, file: string) => void): void;
  visualize(file: string, html: string, cb: (err: Error | null) => void): void;
}

export async function runDoctor(command: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  if (command.length === 0) throw new DiagError('usage: diag doctor -- <command ...> (for example: diag doctor -- node app.js)');
  const nodeNote = unsupportedNode() ? `; note: it targets Node 20 and fails on Node >= 21.7, and this is Node ${process.version}` : '';
  const where = resolveDoctor();
  if (where === null) throw new DiagError(`diag doctor needs @clinic/doctor, which is not installed: ${INSTALL}${nodeNote}`);
  if (nodeNote) io.stderr.write(`diag: warning: @clinic/doctor targets Node 20 and fails on Node >= 21.7; this is Node ${process.version}\n`);
  const mod = createRequire(import.meta.url)(where) as new (opts?: object) => ClinicDoctor;
  const doctor = new mod({});
  const file = await new Promise<string>((resolve, reject) => doctor.collect(command, (err, f) => (err ? reject(err) : resolve(f))));
  const html = `${file}.html`;
  await new Promise<void>((resolve, reject) => doctor.visualize(file, html, (err) => (err ? reject(err) : resolve())));
  io.stdout.write(`${html}\n`);
  return 0;
}
