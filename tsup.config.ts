import { defineConfig } from 'tsup';

const entry = {
  index: 'src/index.ts',
  register: 'src/register.ts',
  express: 'src/adapters/express.ts',
  fastify: 'src/adapters/fastify.ts',
  koa: 'src/adapters/koa.ts',
  hono: 'src/adapters/hono.ts',
  client: 'src/client/index.ts',
};

// Loaded from the app at run time, never bundled: the OpenTelemetry Node SDK is the app's (register starts it), and
// it is not a declared peer (npm checks an optional peer's own peers even where the app does not install it: see
// docs/tracing.md), so tsup would otherwise bundle it.
const external = ['@opentelemetry/sdk-node'];

export default defineConfig([
  { entry, format: 'esm', outDir: 'dist/esm', dts: true, target: 'node20', clean: true, sourcemap: true, external },
  { entry, format: 'cjs', outDir: 'dist/cjs', dts: true, splitting: true, shims: true, target: 'node20', clean: true, sourcemap: true, external },
  {
    entry: { cli: 'diagnostics/cli.ts' },
    format: 'esm',
    outDir: 'dist/diagnostics',
    target: 'node20',
    clean: true,
    sourcemap: true,
    // The CLI is bundled to ESM with CommonJS dependencies (commander, ws) whose `require('events')` esbuild
    // routes through a `require` in scope: give the CLI process (never the user's) one.
    banner: { js: "#!/usr/bin/env node\nimport { createRequire as __streamscopeCreateRequire } from 'node:module';\nconst require = __streamscopeCreateRequire(import.meta.url);" },
  },
]);
