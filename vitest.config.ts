import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'shared/**/*.test.ts',
      'relay/**/*.test.ts',
      'cli/**/*.test.ts',
      'worker/**/*.test.ts',
      'e2e/**/*.test.ts',
    ],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // libp2p 3 expects Node 22: a global WebSocket for dialing, and Promise.withResolvers.
    execArgv: ['--experimental-websocket'],
    setupFiles: ['scripts/node20.mjs'],
    reporters: ['default'],
  },
});
