import { registry } from '../src/errors.js';

/**
 * A `diag` error the operator can act on: printed as one line on stderr (no stack trace), exit code 2.
 * Anything else that escapes a command is a bug in diag, and is still reported in one line.
 */
export class DiagError extends Error {
  readonly code = 'STREAMSCOPE_DIAG_USAGE';
  readonly exitCode: number = registry.STREAMSCOPE_DIAG_USAGE.exit;
  constructor(message: string) {
    super(message);
    this.name = 'DiagError';
  }
}

/** The one line printed for any error: its message, collapsed, without a stack. */
export function errorLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, ' ').trim() || 'unknown error';
}
