import { defineConfig } from 'vitest/config';

/**
 * Two projects: `main` (files isolated by unique names) and `chaos`, one file at a time, which
 * breaks shared things on purpose (resource alarms block every publisher on the broker). `npm test`
 * runs chaos only after main has finished (two vitest runs), so they never overlap.
 */
export default defineConfig({
  test: {
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts', 'test/browser/**/*.test.ts'],
          // One file at a time: the broker, Redis, relays and clients share two cores.
          maxWorkers: 1,
          // The integration tests share a broker with everything else on the machine. The causes
          // of a rare delivery stall seen under heavy churn were found and fixed, with unit tests
          // for each; a test that still fails once runs once more, and the report shows it as
          // retried (with the stall diagnostics of the first attempt), so it is seen, not hidden.
          retry: 1,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'chaos',
          include: ['test/chaos/**/*.test.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
