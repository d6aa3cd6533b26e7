/** The package version, reported by the agent's `hello`; test/agent.test.ts checks it matches package.json. */
export const VERSION = '0.1.0';
