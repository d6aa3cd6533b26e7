/** The package version: defined in the protocol module (src/consumers/agent/protocol.ts), which diag shares. */
export { VERSION } from './protocol.js';
