/**
 * A one-line progress bar on stderr, drawn only when stderr is a terminal (never in pipes, files or CI
 * logs). Redraws at most every 100 ms; `done()` clears the line.
 */
export interface Progress {
  update(done: number, total: number, label?: string): void;
  done(): void;
}

const noop: Progress = { update() {}, done() {} };

export function createProgress(title: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return noop;
  let last = 0;
  let drawn = false;
  const width = 30;
  return {
    update(done, total, label) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const ratio = total > 0 ? Math.min(1, done / total) : 0;
      const fill = Math.round(ratio * width);
      const text = `${title} [${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${Math.round(ratio * 100)
        .toString()
        .padStart(3)} %${label ? ` ${label}` : ''}`;
      stream.write(`\r\x1b[2K${text.slice(0, (stream.columns || 80) - 1)}`);
      drawn = true;
    },
    done() {
      if (drawn) stream.write('\r\x1b[2K');
      drawn = false;
    },
  };
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}
