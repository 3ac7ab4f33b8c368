/* global process, console */
// Runs a benchmark as the hosts run Conclave's code: bundled by esbuild (the CLI's bundle, the
// worker's Vite build), not transformed module by module through tsx, whose kept function names
// cost a call per closure made (about 15 % of the pipeline's own time in bench:core).
// Usage: node scripts/bench-bundled.mjs <entry.ts> [node flags…]
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { NODE_HOST_FLAGS } from './node-host-flags.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [entry, ...nodeFlags] = process.argv.slice(2);
if (entry === undefined) {
  console.error('usage: node scripts/bench-bundled.mjs <entry.ts> [node flags…]');
  process.exit(2);
}
const out = join(root, '.conclave', 'bench', `${basename(entry, '.ts')}.mjs`);
mkdirSync(dirname(out), { recursive: true });
await build({
  entryPoints: [join(root, entry)],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile: out,
  external: ['better-sqlite3', '@automerge/automerge', 'sodium-native'],
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: 'warning',
});
// With the heap settings the CLI runs the pipeline with (node-host-flags.mjs).
const child = spawn(process.execPath, [...NODE_HOST_FLAGS, ...nodeFlags, out], {
  stdio: 'inherit',
  cwd: root,
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal === null ? 1 : 128);
});
