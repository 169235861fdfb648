/**
 * A rolling restart of a three-node cluster under steady load: each node in turn is stopped with
 * SIGTERM (it drains: consumers released, clients told 1012), started again and waited for until
 * ready, and 3 s later the next. 20 users with two clients each, every connection on a random live node.
 * No confirmed message may be lost, none processed out of order, none repeated unflagged.
 */
import { describe, expect, it } from 'vitest';
import { describeRun, runClusterScenario, scenarioSeed } from '../helpers/cluster-scenario.js';

describe('relay cluster rolling restart (3 nodes)', () => {
  it('loses nothing, keeps order and flags every repeat while each node restarts in turn', { timeout: 150_000 }, async () => {
    const seed = scenarioSeed();
    const result = await runClusterScenario({
      nodes: 3,
      users: 20,
      ratePerSec: 40,
      publishMs: 25_000,
      events: [{ atMs: 4_000, kind: 'rolling', pauseMs: 3_000 }],
      settleMs: 20_000,
      seed,
    });
    const summary = describeRun(result, seed);
    console.log(`[relay-cluster-rolling] ${summary}`);
    const { lost, orderViolations, unflaggedDuplicates } = result.report.counts;
    expect(result.figures.confirmed).toBeGreaterThan(0);
    expect({ lost, orderViolations, unflaggedDuplicates }, summary).toEqual({ lost: 0, orderViolations: 0, unflaggedDuplicates: 0 });
  });
});
