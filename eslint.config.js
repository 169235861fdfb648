// ESLint flat config. Type-aware rules read the types through tsconfig.json (projectService), so
// the rules below see what tsc sees; `npm run lint` runs this, prettier and both typechecks.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  globalIgnores(['dist/', 'packages/*/dist/', 'coverage/', 'node_modules/', 'bench/results/']),
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // The process exits on an unhandled rejection: a promise nobody awaits goes through
      // background(promise, onError) (src/background.ts) or gets a rejection handler; `void` does not count.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: false }],
      // A new frame type, close decision or state must be handled everywhere a switch lists them.
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: false, requireDefaultForNonUnion: false },
      ],
      // Type-only imports are erased (verbatimModuleSyntax); keeping them apart shows what is loaded at run time.
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'separate-type-imports' }],
      // `const { jwt: _unused, ...rest } = relay` is how the code drops a field from a copy.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
      // An `async` method that implements a promise-returning interface (the memory store, fakes, CLI
      // commands) turns a throw into a rejection; dropping `async` to please the rule would change that.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // The client SDK runs in browsers: it may use the protocol layer but nothing of the server and no Node module.
    files: ['src/client/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^node:', message: 'src/client runs in browsers: no Node modules.' },
            {
              regex: '^\\.\\./(?!protocol/)',
              message: 'src/client may import only src/protocol from the rest of src (it ships to browsers).',
            },
            {
              // frames.ts holds the relay's zod schemas and index.ts re-exports them: zod alone is 20 times the SDK's size.
              regex: '^\\.\\./protocol/(frames|index)\\.js$',
              message: 'src/client imports the zod-free protocol modules (frame-types, server-frames, close-codes, user-id).',
            },
          ],
        },
      ],
    },
  },
  {
    // Tests read YAML manifests, JSON bodies and raw frames as `any` and poke at them; a wrong field fails
    // the assertion that reads it, so the unsafe-any family would only add casts to the tests.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      // Plain scripts run under Node; globals such as process and console are known to it.
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly' },
    },
  },
);
