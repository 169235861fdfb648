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
          // A rare stall under heavy client churn is still open (see the issue note): a test that
          // meets it runs once more, and the report shows it as retried.
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
