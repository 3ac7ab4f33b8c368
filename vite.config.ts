// The Svelte PWA (ARCHITECTURE.md section 1): sources in web/, static files (manifest, icons)
// in public/, the build in dist/web, which the relay serves (`--web-root`).
//
// The peer core runs in a SharedWorker (web/src/worker-entry.ts → worker/src/worker.ts), built
// as an ES module worker. Automerge's wasm is not bundled into it: the worker loads
// `@automerge/automerge/slim` and the wasm file by URL the first time a collaborative post
// is met, so neither the page nor the worker's first load carries it.
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  // Absolute, so the config works whatever directory Vite is started from.
  root: fileURLToPath(new URL('./web', import.meta.url)),
  // Relative to `root`.
  publicDir: '../public',
  plugins: [svelte()],
  build: {
    outDir: '../dist/web',
    // outDir lies outside root, where Vite will not empty it unless told to.
    emptyOutDir: true,
    target: 'es2022',
  },
  worker: { format: 'es' },
  // Loopback only: the dev server is not for the network.
  server: { host: '127.0.0.1' },
});
