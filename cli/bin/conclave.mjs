#!/usr/bin/env node
// The `conclave` command (package.json "bin"): runs cli/src/main.ts under Node with what the
// network code needs on Node 20 (`--experimental-websocket`, the Promise.withResolvers
// polyfill) and tsx to load TypeScript. Signals are passed on; the exit code is the command's.
/* global process */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const child = spawn(
  process.execPath,
  [
    '--experimental-websocket',
    '--no-warnings=ExperimentalWarning',
    '--import',
    join(root, 'scripts/node20.mjs'),
    '--import',
    import.meta.resolve('tsx'),
    join(root, 'cli/src/main.ts'),
    ...process.argv.slice(2),
  ],
  { stdio: 'inherit', cwd: process.cwd() },
);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal === null ? 1 : 128);
});
