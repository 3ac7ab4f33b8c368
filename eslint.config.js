// Lint is type-aware and zero-warning. The peer core (shared/) must stay
// environment-free: no Node built-ins, no DOM-only globals (see ARCHITECTURE.md section 1).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', '**/dist/', '.conclave/', 'coverage/', 'android/', 'ios/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/consistent-type-imports': 'error',
      // Branded-id constructors are generic in their return type only, on purpose.
      '@typescript-eslint/no-unnecessary-type-parameters': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['shared/**/*.ts'],
    ignores: ['shared/**/*.node.ts', 'shared/**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['fs', 'path', 'os', 'crypto', 'net', 'http', 'child_process', 'worker_threads'].map(
            (name) => ({
              name,
              message: 'shared/ is environment-free: use a port.',
            }),
          ),
          patterns: [
            { group: ['node:*'], message: 'shared/ is environment-free: use a port.' },
            {
              group: ['**/web/**', '**/worker/**', '**/relay/**', '**/cli/**'],
              message: 'shared/ imports nothing from the hosts.',
            },
          ],
        },
      ],
      'no-restricted-globals': ['error', 'window', 'document', 'process', 'Buffer', 'require'],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
