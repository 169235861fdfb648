import { defineConfig } from 'vitest/config';

/**
 * Three projects, run one after the other by `npm test` (three vitest runs, so they never overlap),
 * and a fourth, `cluster`, that `npm run test:cluster` runs on its own:
 * - `unit`: pure logic on fake timers; no global setup, so it runs with RabbitMQ and Redis stopped.
 * - `integration`: the real RabbitMQ and Redis (found or started by the global setup), files
 *   isolated by unique names; the browser tests belong here (they need a relay).
 * - `chaos`: one file at a time; these break shared things on purpose (resource alarms block
 *   every publisher on the broker).
 * - `cluster`: a local 3-node RabbitMQ cluster and Redis with Sentinel (brought up by its global
 *   setup through scripts/rabbitmq-cluster.sh and scripts/redis-sentinel.sh, beside the machine's
 *   own broker and Redis); one file at a time, since tests kill nodes.
 * No project retries a failed test: a failure is reported the first time it happens.
 */
export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/browser/**/*.test.ts'],
          globalSetup: ['test/helpers/global-setup.ts'],
          // One file at a time: the broker, Redis, relays and clients share two cores.
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: 'chaos',
          include: ['test/chaos/**/*.test.ts'],
          globalSetup: ['test/helpers/global-setup.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
      {
        extends: true,
        test: {
          name: 'cluster',
          include: ['test/cluster/**/*.test.ts'],
          globalSetup: ['test/helpers/cluster-setup.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 3 },
        },
      },
    ],
  },
});
