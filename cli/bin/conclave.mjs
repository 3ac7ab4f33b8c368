#!/usr/bin/env node
/* global process */
// The `conclave` command (package.json "bin"): runs the CLI bundle (built by cli/build.mjs
// when missing or stale) under Node with what the network code needs on Node 20
// (`--experimental-websocket`, the Promise.withResolvers polyfill) and the heap settings of a
// Node host (scripts/node-host-flags.mjs). Signals are passed on; the exit code is the command's.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_HOST_FLAGS } from '../../scripts/node-host-flags.mjs';
import { ensureBundle } from '../build.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bundle = await ensureBundle();
const child = spawn(
  process.execPath,
  [
    ...NODE_HOST_FLAGS,
    '--experimental-websocket',
    '--no-warnings=ExperimentalWarning',
    '--import',
    join(root, 'scripts/node20.mjs'),
    bundle,
    ...process.argv.slice(2),
  ],
  { stdio: 'inherit', cwd: process.cwd() },
);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal === null ? 1 : 128);
});
