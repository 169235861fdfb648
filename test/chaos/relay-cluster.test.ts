/**
 * Three relay processes serve 40 users with two logical clients each, every connection on a
 * random node, while a producer publishes at a steady rate: connections drop at random and resume
 * on a random live node, one node is killed (SIGKILL) and started again, another is stopped
 * (SIGTERM: it drains) and started again, all mid-stream. Every client must process every
 * confirmed message of its user, in order, without unflagged duplicates and without stalling;
 * a user's two clients must see the same seq for the same message; and once they acked
 * everything, the user's queue must be empty, wherever the acks were made (acks on a node that
 * does not hold the message must reach the one that does).
 *
 * CLUSTER_NODES=1 runs the same scenario on one node (every connection on n1, both signals to
 * it): the harness's own check. CLUSTER_SEED replays a run's random choices.
 */
import { describe, expect, it } from 'vitest';
import { ZERO_COUNTS } from '../helpers/cluster-check.js';
import { describeRun, runClusterScenario, scenarioSeed, seededRandom } from '../helpers/cluster-scenario.js';

const NODES = Number(process.env.CLUSTER_NODES ?? 3);
const PUBLISH_MS = 35_000;

describe(`relay cluster (${NODES} node${NODES === 1 ? '' : 's'})`, () => {
  it('delivers every confirmed message to every client of its user across drops, a crash and a drain', { timeout: 180_000 }, async () => {
    const seed = scenarioSeed();
    const pick = seededRandom(seed ^ 0x5eed);
    const killed = Math.floor(pick() * NODES);
    // Another node than the killed one, when there is one.
    const drained = NODES === 1 ? 0 : (killed + 1 + Math.floor(pick() * (NODES - 1))) % NODES;
    const result = await runClusterScenario({
      nodes: NODES,
      users: 40,
      ratePerSec: 60,
      publishMs: PUBLISH_MS,
      dropEveryMs: 400,
      events: [
        { atMs: PUBLISH_MS * 0.25, kind: 'kill', node: killed, downMs: 2_000 },
        { atMs: PUBLISH_MS * 0.55, kind: 'term', node: drained, downMs: 1_000 },
      ],
      settleMs: 20_000,
      queueSettleMs: 15_000,
      seed,
    });
    const summary = describeRun(result, seed);
    console.log(`[relay-cluster] ${summary}`);
    expect(result.figures.confirmed).toBeGreaterThan(0);
    expect(result.report.counts, summary).toEqual(ZERO_COUNTS);
  });
});
