/**
 * Private state lives on symbols from this one file. `Symbol.for` keys make two copies of the
 * package (ESM and CJS, or two versions) share one tracker and never count a response twice.
 */
export const kState = Symbol.for('streamscope.state');
export const kInstrumented = Symbol.for('streamscope.instrumented');
export const kTracker = Symbol.for('streamscope.tracker');
export const kMetricsSets = Symbol.for('streamscope.metrics');
export const kObserver = Symbol.for('streamscope.observer');
export const kAgent = Symbol.for('streamscope.agent');
export const kStreamIds = Symbol.for('streamscope.streamIds');
