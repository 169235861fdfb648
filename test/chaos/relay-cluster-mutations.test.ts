/**
 * The cluster test can tell: a smaller run of its scenario (2 nodes, 6 users with two clients
 * each) with the node bus broken on purpose in the relay children (a preloaded mutation,
 * test/helpers/mutations/bus-publish.mjs, that drops some of what RedisNodeBus publishes):
 * - drop-first-numbered: the first `numbered` run each node publishes per user is lost; the nodes
 *   must notice the gap (seqs, `head` heartbeats) and heal it from history: every count is 0;
 * - drop-all: nothing crosses between nodes: clients on the node that does not hold the user's
 *   consumer stall, so some count is not 0;
 * - drop-acked: acks never cross (neither `acked` messages nor the acked mark in heartbeats):
 *   messages acked only on the other node stay in the queue, so some count is not 0.
 * Every user's first client attaches on n1 (its consumer becomes the active one), the second on
 * n2; a third of the way in, every first client moves to n2. STREAM_LINGER_MS keeps n1's
 * consumers for the whole run, so from then on n1 delivers and acks for clients that are all on n2.
 * Each case also checks that the mutation was loaded in every node and dropped something.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ZERO_COUNTS, allZero } from '../helpers/cluster-check.js';
import { describeRun, runClusterScenario, scenarioSeed } from '../helpers/cluster-scenario.js';

const PRELOAD = fileURLToPath(new URL('../helpers/mutations/bus-publish.mjs', import.meta.url));
const PUBLISH_MS = 10_000;

interface MutationLine {
  event: 'armed' | 'dropped';
  kind?: string;
}

async function runMutation(mutation: string) {
  const seed = scenarioSeed();
  const reports: MutationLine[] = [];
  const result = await runClusterScenario({
    nodes: 2,
    users: 6,
    ratePerSec: 30,
    publishMs: PUBLISH_MS,
    dropEveryMs: 1_500,
    firstNode: (replica) => (replica === 0 ? 0 : 1),
    events: [{ atMs: PUBLISH_MS / 3, kind: 'move', replica: 0, toNode: 1 }],
    settleMs: 12_000,
    queueSettleMs: 10_000,
    seed,
    env: { INBOX_RELAY_TEST_MUTATION: mutation, STREAM_LINGER_MS: '60000' },
    nodeArgs: ['--import', PRELOAD],
    onLine: (_node, line) => {
      if (line.includes('"msg":"test mutation"')) reports.push(JSON.parse(line) as MutationLine);
    },
  });
  const summary = `${mutation}: ${describeRun(result, seed)}`;
  console.log(`[relay-cluster-mutations] ${summary}`);
  return {
    result,
    summary,
    armed: reports.filter((r) => r.event === 'armed').length,
    dropped: reports.filter((r) => r.event === 'dropped'),
  };
}

describe('relay cluster mutations (2 nodes)', () => {
  it('drop-first-numbered: heals, every count is 0', { timeout: 120_000 }, async () => {
    const { result, summary, armed, dropped } = await runMutation('drop-first-numbered');
    expect(armed, summary).toBe(2);
    expect(dropped.length, `the mutation never dropped a message\n${summary}`).toBeGreaterThan(0);
    expect(result.report.counts, summary).toEqual(ZERO_COUNTS);
  });

  it('drop-all: some count is not 0', { timeout: 120_000 }, async () => {
    const { result, summary, armed, dropped } = await runMutation('drop-all');
    expect(armed, summary).toBe(2);
    expect(dropped.length, `the mutation never dropped a message\n${summary}`).toBeGreaterThan(0);
    expect(allZero(result.report.counts), summary).toBe(false);
  });

  it('drop-acked: some count is not 0', { timeout: 120_000 }, async () => {
    const { result, summary, armed, dropped } = await runMutation('drop-acked');
    expect(armed, summary).toBe(2);
    expect(
      dropped.some((line) => line.kind === 'acked'),
      `the mutation never dropped an acked message\n${summary}`,
    ).toBe(true);
    expect(allZero(result.report.counts), summary).toBe(false);
  });
});
