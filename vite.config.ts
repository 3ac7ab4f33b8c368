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
import { VitePWA } from 'vite-plugin-pwa';

export default defineConfig({
  // Absolute, so the config works whatever directory Vite is started from.
  root: fileURLToPath(new URL('./web', import.meta.url)),
  // Relative to `root`.
  publicDir: '../public',
  plugins: [
    svelte(),
    // The installable PWA: a manifest, and a Workbox service worker that precaches the shell
    // (page, worker, styles, icons) so a reload while offline opens the app with its Spaces.
    // Automerge's wasm is left out of the precache: it is fetched when first needed.
    VitePWA({
      registerType: 'autoUpdate',
      injectRegister: 'script',
      includeAssets: ['icon-192.png', 'icon-512.png', 'icon-maskable-512.png'],
      manifest: {
        name: 'Conclave',
        short_name: 'Conclave',
        description: 'Private community spaces, end-to-end encrypted.',
        start_url: '/',
        scope: '/',
        display: 'standalone',
        // The installed desktop app: its own title bar area where the browser offers it.
        display_override: ['window-controls-overlay', 'standalone'],
        background_color: '#ffffff',
        theme_color: '#4c1d95',
        icons: [
          { src: '/icon-192.png', sizes: '192x192', type: 'image/png' },
          { src: '/icon-512.png', sizes: '512x512', type: 'image/png' },
          { src: '/icon-maskable-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
        ],
        // The icon's menu; web/src/launch.ts reads `do`.
        shortcuts: [
          {
            name: 'New message',
            short_name: 'Message',
            url: '/?do=message',
            icons: [{ src: '/icon-192.png', sizes: '192x192', type: 'image/png' }],
          },
          {
            name: 'Join space',
            short_name: 'Join',
            url: '/?do=join',
            icons: [{ src: '/icon-192.png', sizes: '192x192', type: 'image/png' }],
          },
        ],
        // web+conclave://join/… invite links open the installed app, which joins (web/src/launch.ts).
        protocol_handlers: [{ protocol: 'web+conclave', url: '/?invite=%s' }],
      },
      workbox: {
        globPatterns: ['**/*.{js,css,html,png,svg,webmanifest}'],
        navigateFallback: '/index.html',
        navigateFallbackDenylist: [/^\/config\.json$/, /^\/healthz$/, /^\/metrics$/],
        maximumFileSizeToCacheInBytes: 4 * 1024 * 1024,
      },
    }),
  ],
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
