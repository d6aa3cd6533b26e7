import { registry } from '../../src/errors.js';

/**
 * An input the analyzer cannot use: a missing or unreadable path, a file that is not a heap snapshot,
 * a truncated or corrupted one. The CLI prints its message as one line and exits with code 2.
 */
const kInputError = Symbol.for('streamscope.diag.input_error');

export class InputError extends Error {
  readonly code = 'STREAMSCOPE_DIAG_INPUT';
  readonly exitCode: number = registry.STREAMSCOPE_DIAG_INPUT.exit;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InputError';
    (this as unknown as Record<symbol, boolean>)[kInputError] = true;
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[kInputError] === true;
  }
}

/** One line for the operator: no stack, no newlines. */
export function oneLine(message: string): string {
  return message.replace(/\s+/g, ' ').trim().slice(0, 500);
}
