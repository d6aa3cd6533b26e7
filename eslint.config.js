// Lint for the library, the CLI and their tooling; `npm test` runs it (`npm run lint`).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/**/node_modules/**', 'test-artifacts/**', 'dashboards/**/*.json'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      'no-empty': ['error', { allowEmptyCatch: true }],
      // Parsers of V8's and the kernel's formats match control characters on purpose.
      'no-control-regex': 'off',
      // `let x = default; try { x = … } catch { … }` reads clearer than the rule's alternative.
      'no-useless-assignment': 'off',
    },
  },
  {
    files: ['**/*.ts'],
    rules: {
      // `_`-prefixed parameters and caught errors are deliberately unused.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // Tests read JSON of unknown shape and match terminal output.
    files: ['test/**', 'alerts/**/*.test.ts', 'dashboards/**/*.test.ts', 'dashboards/lint.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off', 'no-control-regex': 'off' },
  },
  {
    files: ['**/*.mjs', '**/*.js', '**/*.cjs'],
    languageOptions: { globals: { ...globals.node } },
    rules: { '@typescript-eslint/no-require-imports': 'off', '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none' }] },
  },
);
