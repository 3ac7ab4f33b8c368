/* global process, console */
// Builds the CLI into one file, cli/dist/conclave.mjs, with esbuild: a command then starts in
// about half a second instead of the seconds that loading every TypeScript module through tsx
// takes. Rebuilt whenever a source file is newer than the bundle. Native and WebAssembly
// packages (better-sqlite3, Automerge) stay outside and load from node_modules.
import { mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const bundlePath = join(root, 'cli', 'dist', 'conclave.mjs');

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newest(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

function bundleTime() {
  try {
    return statSync(bundlePath).mtimeMs;
  } catch {
    return -1;
  }
}

/** The bundle's path, built first when missing or older than a source file. */
export async function ensureBundle() {
  const sources = Math.max(newest(join(root, 'cli', 'src')), newest(join(root, 'shared', 'src')));
  if (bundleTime() >= sources) return bundlePath;
  const { build } = await import('esbuild');
  mkdirSync(dirname(bundlePath), { recursive: true });
  const tmp = `${bundlePath}.${process.pid}.tmp`;
  await build({
    entryPoints: [join(root, 'cli', 'src', 'main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: tmp,
    external: ['better-sqlite3', '@automerge/automerge', 'sodium-native'],
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: 'warning',
  });
  renameSync(tmp, bundlePath);
  return bundlePath;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(await ensureBundle());
}
