// The Svelte PWA (ARCHITECTURE.md section 1): sources in web/, static files (manifest, icons)
// in public/, the build in dist/web, which the relay serves.
//
// When the worker lands: @automerge/automerge's `browser` export imports its .wasm as an ES
// module, which Vite does not bundle by itself. Either add vite-plugin-wasm (to `plugins` and
// `worker.plugins`) or have the worker import `@automerge/automerge/slim` and call
// `initializeWasm` with the wasm's `?url` before the peer core runs.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  // Absolute, so the config works whatever directory Vite is started from.
  root: fileURLToPath(new URL('./web', import.meta.url)),
  // Relative to `root`.
  publicDir: '../public',
  build: {
    outDir: '../dist/web',
    // outDir lies outside root, where Vite will not empty it unless told to.
    emptyOutDir: true,
  },
  // The peer core runs in a (Shared)Worker built as an ES module worker.
  worker: { format: 'es' },
  // Loopback only: the dev server is not for the network.
  server: { host: '127.0.0.1' },
});
