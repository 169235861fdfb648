/**
 * Two relay nodes (A and B) sharing RabbitMQ, Redis and one REDIS_KEY_PREFIX, every user with one
 * connection on each (bench/README.md, cluster):
 * - latency: at a steady rate, due publish time to receipt on the connection on the owning node
 *   (A: its consumers are the active ones, it numbers the messages) and on the connection on the
 *   other node (B: it gets them from A over the node bus), in the same run and for the same
 *   messages; the owner's side is the baseline;
 * - failover: SIGKILL of the owner while messages flow, to the first new message on the other
 *   node, over rounds (cluster-failover.ts).
 * A is made the owner deterministically: its clients connect first and one message per user is
 * received on A before B's clients connect, so RabbitMQ activates A's consumer (single active
 * consumer) and B's waits; RabbitMQ's own view (consumer tags carry the NODE_ID) is checked
 * before anything is measured. The relays run with their default settings, except the window
 * every bench scenario uses (WINDOW_DEFAULT = WINDOW_MAX = 20) and LOG_LEVEL=warn.
 */
import { loadavg } from 'node:os';
import { defaultManagementUrl, vhostOf } from '../../src/cli/operator-config.js';
import type { QueueType } from '../../src/config.js';
import { waitUntil } from '../../src/wait-until.js';
import type { ClientStats } from '../clients/relay-client.js';
import { waitForOwnership, type OwnershipCheck } from '../env/consumers.js';
import { watchCpu } from '../env/proc.js';
import { deleteRedisPrefix } from '../lib/redis-cleanup.js';
import { nowUs, sleep, withTimeout } from '../lib/time.js';
import { PairedDelays, type PairedSummary } from '../load/paired-delays.js';
import { declareInboxes, deleteInboxes } from '../load/queues.js';
import { Tracker, type Accounting, type LatencySummary } from '../load/tracker.js';
import { failoverRounds, type FailoverPlan, type FailoverResult } from './cluster-failover.js';
import { ClusterNode, counterDelta } from './cluster-nodes.js';
import { sum, type BenchContext } from './context.js';

export interface ClusterPlan {
  queueType: QueueType;
  latency: { users: number; rate: number; warmupMs: number; measureMs: number };
  failover: Omit<FailoverPlan, 'queueType'>;
}

export interface ClusterSide extends Accounting {
  node: string;
  latency: LatencySummary | undefined;
  /** Seq anomalies the side's clients saw (see ClientStats). */
  gaps: number;
  repeatedSeqs: number;
  resets: number;
}

export interface ClusterLatencyResult {
  queueType: QueueType;
  users: number;
  rate: number;
  achievedRate: number;
  publisherLagMs: number;
  warmupMs: number;
  measureMs: number;
  /** RabbitMQ's view before and after the phase: A's consumers active, B's waiting. */
  ownershipBefore: OwnershipCheck;
  ownershipAfter: OwnershipCheck;
  owner: ClusterSide;
  other: ClusterSide;
  /** Other node minus owning node, at p50 and p99 (ms), and other / owner. */
  addedP50Ms: number | undefined;
  addedP99Ms: number | undefined;
  ratioP50: number | undefined;
  ratioP99: number | undefined;
  /** Message by message: how much later the other node's connection got it than the owner's. */
  paired: PairedSummary | undefined;
  /** Each node's cluster counters over the phase, by NODE_ID. */
  counters: Record<string, Record<string, number>>;
  cpu: Record<string, number>;
  drained: boolean;
  loadavg: { before: number[]; after: number[] };
}

export interface ClusterResult {
  nodes: number;
  /** Relay settings that differ from the defaults (src/config.ts). */
  overrides: Record<string, string>;
  latency: ClusterLatencyResult | undefined;
  failover: FailoverResult | undefined;
}

const OWNERSHIP_TIMEOUT_MS = 30_000;

interface Management {
  url: string;
  vhost: string;
}

function management(ctx: BenchContext): Management {
  return { url: process.env.BENCH_RABBITMQ_MANAGEMENT_URL ?? defaultManagementUrl(ctx.rabbitmqUrl), vhost: vhostOf(ctx.rabbitmqUrl) };
}

/** The settings the bench's relay children run with that are not the relay's defaults. */
function overrides(): Record<string, string> {
  const extra = process.env.BENCH_RELAY_ENV ? (JSON.parse(process.env.BENCH_RELAY_ENV) as Record<string, string>) : {};
  return { WINDOW_DEFAULT: '20', WINDOW_MAX: '20', LOG_LEVEL: 'warn', ...extra };
}

interface Cluster {
  nodes: [ClusterNode, ClusterNode];
  users: string[];
  keyPrefix: string;
  ownership: OwnershipCheck;
}

/**
 * Declares the users' queues, starts A and B, connects A's clients, has one message per user
 * received on A (A's consumers become the active ones), then connects B's clients, and waits
 * until RabbitMQ shows A active and B waiting on every queue. The cluster is returned as soon as
 * its nodes run, also on failure (in `partial`), so that the caller can stop it.
 */
async function formCluster(
  ctx: BenchContext,
  tag: string,
  count: number,
  queueType: QueueType,
  mgmt: Management,
  partial: { cluster?: Pick<Cluster, 'nodes' | 'users' | 'keyPrefix'> },
): Promise<Cluster> {
  const users = Array.from({ length: count }, (_, i) => `bench-${ctx.runId}-${tag}-u${i}`);
  const keyPrefix = `bench-${ctx.runId}-${tag}:`;
  const nodes: [ClusterNode, ClusterNode] = [
    new ClusterNode(ctx, 'A', { keyPrefix, queueType, tag }),
    new ClusterNode(ctx, 'B', { keyPrefix, queueType, tag }),
  ];
  const [a, b] = nodes;
  partial.cluster = { nodes, users, keyPrefix };
  const declared = await declareInboxes(ctx.rabbitmqUrl, users, queueType, Date.now() + 120_000);
  if (declared.failed > 0) throw new Error(`could not declare ${declared.failed} queues: ${declared.errors.join('; ')}`);
  await a.start();
  await b.start();
  ctx.log(`cluster ${tag}: nodes ${a.nodeId} and ${b.nodeId}; connecting ${count} clients to A`);
  await a.connect(users);
  const phase = ctx.nextPhase();
  const warm = new Tracker(phase, users.length);
  a.slot.current = warm;
  const report = await ctx.publisher.run({ phase, users, mode: 'max', totalMessages: users.length, durationMs: 60_000 });
  const expected = sum(report.published) - report.nacked.length - report.unconfirmed;
  await waitUntil(() => warm.received >= expected, { timeoutMs: 30_000, what: `one message per user on A (${warm.received}/${expected})` });
  ctx.log(`cluster ${tag}: ${warm.received} warm-up messages received on A; connecting ${count} clients to B`);
  await b.connect(users);
  const ownership = await waitForOwnership(mgmt.url, mgmt.vhost, users, { owner: a.nodeId, waiting: [b.nodeId] }, OWNERSHIP_TIMEOUT_MS);
  ctx.log(`cluster ${tag}: ${ownership.matching}/${count} queues with ${a.nodeId} active and ${b.nodeId} waiting`);
  if (!ownership.ok)
    throw new Error(
      `cluster ${tag}: A does not own every user: ${ownership.matching}/${count} as expected (e.g. ${ownership.example ?? '?'})`,
    );
  return { nodes, users, keyPrefix, ownership };
}

async function dissolve(ctx: BenchContext, cluster: Pick<Cluster, 'nodes' | 'users' | 'keyPrefix'>): Promise<void> {
  for (const node of cluster.nodes)
    await withTimeout(node.stop(), 60_000, `stop ${node.nodeId}`).catch((error: unknown) => ctx.log((error as Error).message));
  const deleted = await withTimeout(deleteInboxes(ctx.rabbitmqUrl, cluster.users, Date.now() + 120_000), 150_000, 'delete queues').catch(
    (error: unknown) => ({ done: 0, failed: cluster.users.length, errors: [(error as Error).message] }),
  );
  if (deleted.failed > 0)
    ctx.log(`could not delete ${deleted.failed} queues (node dist/bench/run.js --cleanup): ${deleted.errors[0] ?? ''}`);
  await withTimeout(deleteRedisPrefix(ctx.redisUrl, cluster.keyPrefix), 60_000, 'Redis cleanup').catch(() => 0);
}

const statsDelta = (after: ClientStats, before: ClientStats): Pick<ClusterSide, 'gaps' | 'repeatedSeqs' | 'resets'> => ({
  gaps: after.gaps - before.gaps,
  repeatedSeqs: after.repeatedSeqs - before.repeatedSeqs,
  resets: after.resets - before.resets,
});

async function latencyPhase(ctx: BenchContext, plan: ClusterPlan, cluster: Cluster, mgmt: Management): Promise<ClusterLatencyResult> {
  const [a, b] = cluster.nodes;
  const { users } = cluster;
  const { rate, warmupMs, measureMs } = plan.latency;
  const phase = ctx.nextPhase();
  const ownerTracker = new Tracker(phase, users.length, { latency: true });
  const otherTracker = new Tracker(phase, users.length, { latency: true });
  const pairs = new PairedDelays(phase);
  a.slot.current = pairs.side('first', ownerTracker);
  b.slot.current = pairs.side('second', otherTracker);
  const from = nowUs() + warmupMs * 1000;
  for (const recorder of [ownerTracker, otherTracker]) recorder.recordLatencyBetween(from, from + measureMs * 1000);
  pairs.recordBetween(from, from + measureMs * 1000);
  const statsBefore = [{ ...a.stats }, { ...b.stats }];
  const countersBefore = await Promise.all(cluster.nodes.map((n) => n.clusterCounters()));
  const loadBefore = loadavg();
  ctx.log(`cluster latency: ${rate} msgs/s to ${users.length} users, ${warmupMs / 1000} s warm-up, ${measureMs / 1000} s measured`);
  const running = ctx.publisher.run({ phase, users, mode: 'rate', rate, durationMs: warmupMs + measureMs });
  await sleep(warmupMs);
  const cpu = watchCpu({ relayA: a.pid, relayB: b.pid, broker: ctx.brokerPid, redis: ctx.redisPid, bench: process.pid });
  await sleep(measureMs);
  const cpuUse = cpu.stop();
  const report = await running;
  const expected = sum(report.published) - report.nacked.length - report.unconfirmed;
  const drained = await waitUntil(() => ownerTracker.received >= expected && otherTracker.received >= expected, {
    timeoutMs: 60_000,
    intervalMs: 20,
  });
  await sleep(300);
  const countersAfter = await Promise.all(cluster.nodes.map((n) => n.clusterCounters()));
  // One reading: ownership must not have moved during the phase.
  const ownershipAfter = await waitForOwnership(mgmt.url, mgmt.vhost, users, { owner: a.nodeId, waiting: [b.nodeId] }, 0);
  const side = (node: ClusterNode, tracker: Tracker, before: ClientStats): ClusterSide => ({
    node: node.nodeId,
    latency: tracker.latency(),
    ...statsDelta(node.stats, before),
    ...tracker.account(report.published, report.nacked),
  });
  const owner = side(a, ownerTracker, statsBefore[0] as ClientStats);
  const other = side(b, otherTracker, statsBefore[1] as ClientStats);
  const minus = (x: number | undefined, y: number | undefined): number | undefined =>
    x === undefined || y === undefined ? undefined : Math.round((x - y) * 100) / 100;
  const over = (x: number | undefined, y: number | undefined): number | undefined =>
    x === undefined || !y ? undefined : Math.round((x / y) * 100) / 100;
  return {
    queueType: plan.queueType,
    users: users.length,
    rate,
    achievedRate: Math.round(sum(report.published) / (report.publishMs / 1000)),
    publisherLagMs: Math.round(report.maxLagMs * 10) / 10,
    warmupMs,
    measureMs,
    ownershipBefore: cluster.ownership,
    ownershipAfter,
    owner,
    other,
    addedP50Ms: minus(other.latency?.p50Ms, owner.latency?.p50Ms),
    addedP99Ms: minus(other.latency?.p99Ms, owner.latency?.p99Ms),
    ratioP50: over(other.latency?.p50Ms, owner.latency?.p50Ms),
    ratioP99: over(other.latency?.p99Ms, owner.latency?.p99Ms),
    paired: pairs.summary(),
    counters: {
      [a.nodeId]: counterDelta(countersAfter[0] ?? {}, countersBefore[0] ?? {}),
      [b.nodeId]: counterDelta(countersAfter[1] ?? {}, countersBefore[1] ?? {}),
    },
    cpu: cpuUse,
    drained,
    loadavg: { before: loadBefore, after: loadavg() },
  };
}

/** Runs the latency phase on one cluster, then the failover rounds on another; each is stopped and cleaned up after. */
export async function runCluster(ctx: BenchContext, plan: ClusterPlan): Promise<{ result: ClusterResult; errors: string[] }> {
  const mgmt = management(ctx);
  const result: ClusterResult = { nodes: 2, overrides: overrides(), latency: undefined, failover: undefined };
  const errors: string[] = [];
  const fail = (what: string, error: unknown): void => {
    const message = `cluster ${what}: ${error instanceof Error ? error.message : String(error)}`;
    ctx.log(`FAILED ${message}`);
    errors.push(message);
  };

  const forLatency: { cluster?: Pick<Cluster, 'nodes' | 'users' | 'keyPrefix'> } = {};
  try {
    const cluster = await formCluster(ctx, 'cl', plan.latency.users, plan.queueType, mgmt, forLatency);
    result.latency = await latencyPhase(ctx, plan, cluster, mgmt);
    const l = result.latency;
    ctx.log(
      `cluster latency: owner p50 ${l.owner.latency?.p50Ms} / p99 ${l.owner.latency?.p99Ms} ms, other node p50 ${l.other.latency?.p50Ms} / p99 ${l.other.latency?.p99Ms} ms: other node adds ${l.addedP50Ms} ms at p50, ${l.addedP99Ms} ms at p99; lost ${l.owner.lost} / ${l.other.lost}`,
    );
  } catch (error) {
    fail('latency', error);
  } finally {
    if (forLatency.cluster) await dissolve(ctx, forLatency.cluster);
  }

  const forFailover: { cluster?: Pick<Cluster, 'nodes' | 'users' | 'keyPrefix'> } = {};
  try {
    const cluster = await formCluster(ctx, 'cf', plan.failover.users, plan.queueType, mgmt, forFailover);
    const outcome = await failoverRounds(
      ctx,
      { ...plan.failover, queueType: plan.queueType },
      cluster.nodes,
      cluster.users,
      mgmt,
      cluster.ownership,
    );
    result.failover = outcome.result;
    if (outcome.error) fail('failover', outcome.error);
    const f = outcome.result;
    ctx.log(
      `failover: p50 ${f.failover?.p50Ms} ms, p99 ${f.failover?.p99Ms} ms, max ${f.failover?.maxMs} ms over ${f.failover?.count} user-rounds; lost ${f.lost}`,
    );
  } catch (error) {
    fail('failover', error);
  } finally {
    if (forFailover.cluster) await dissolve(ctx, forFailover.cluster);
  }
  return { result, errors };
}
