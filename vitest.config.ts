import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'shared/**/*.test.ts',
      'relay/**/*.test.ts',
      'cli/**/*.test.ts',
      'worker/**/*.test.ts',
      'web/**/*.test.ts',
      'e2e/**/*.test.ts',
    ],
    testTimeout: 120_000,
    // Browser tests wait for what a person would see; on a loaded 2-core CI machine a scrypt in
    // a page or a relay round trip can take seconds, so polls wait up to 30 s (they end as soon
    // as the condition holds).
    expect: { poll: { timeout: 30_000, interval: 100 } },
    hookTimeout: 60_000,
    pool: 'forks',
    // libp2p 3 expects Node 22: a global WebSocket for dialing, and Promise.withResolvers.
    execArgv: ['--experimental-websocket'],
    setupFiles: ['scripts/node20.mjs'],
    reporters: ['default'],
  },
});
