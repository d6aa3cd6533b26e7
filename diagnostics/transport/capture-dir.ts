import fs from 'node:fs';
import path from 'node:path';
import { DiagError } from '../errors.js';

export const CAPTURE_FORMAT_VERSION = 1;

export interface Manifest {
  version: number;
  pid: number;
  nodeVersion: string;
  /** ISO time the capture started. */
  time: string;
  transport: 'agent' | 'inspector';
  streamscopeVersion: string | null;
  argv: string[];
  /** Files written so far, in order. */
  files: string[];
  /** Steps that failed or were refused, with why. */
  errors: Array<{ step: string; message: string }>;
  /** Set when the capture finished. */
  complete: boolean;
}

/**
 * A capture directory: mode 0700, every file 0600 (set explicitly, whatever the umask). The manifest is
 * rewritten after every step, so a capture that stops half-way still says what it holds.
 */
export class CaptureDir {
  readonly manifest: Manifest;

  private constructor(
    readonly dir: string,
    manifest: Manifest,
  ) {
    this.manifest = manifest;
  }

  static create(dir: string, manifest: Omit<Manifest, 'version' | 'files' | 'errors' | 'complete'>): CaptureDir {
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new DiagError(`${dir} already exists; choose another --out`);
      throw new DiagError(`cannot create ${dir}: ${code ?? (err as Error).message}`);
    }
    fs.chmodSync(dir, 0o700);
    const c = new CaptureDir(dir, { version: CAPTURE_FORMAT_VERSION, ...manifest, files: [], errors: [], complete: false });
    c.writeManifest();
    return c;
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  writeJson(name: string, value: unknown): void {
    this.writeFile(name, JSON.stringify(value, null, 2) + '\n');
    this.added(name);
  }

  /** Opens `name` for streaming (0600); call `added(name)` once complete. */
  openStream(name: string): fs.WriteStream {
    const file = this.file(name);
    const fd = fs.openSync(file, 'wx', 0o600);
    fs.fchmodSync(fd, 0o600);
    return fs.createWriteStream(file, { fd });
  }

  added(name: string): void {
    if (!this.manifest.files.includes(name)) this.manifest.files.push(name);
    this.writeManifest();
  }

  error(step: string, message: string): void {
    this.manifest.errors.push({ step, message });
    this.writeManifest();
  }

  finish(): void {
    this.manifest.complete = true;
    this.writeManifest();
  }

  writeManifest(): void {
    this.writeFile('manifest.json', JSON.stringify(this.manifest, null, 2) + '\n');
  }

  private writeFile(name: string, text: string): void {
    const file = this.file(name);
    const tmp = `${file}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.fchmodSync(fd, 0o600);
      fs.writeSync(fd, text);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  }
}

/** `./streamscope-capture-<pid>-<YYYYMMDD-HHMMSS>` */
export function defaultCaptureDir(pid: number, now = new Date()): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  const stamp = `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
  return path.resolve(`streamscope-capture-${pid}-${stamp}`);
}
