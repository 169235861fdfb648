/**
 * Failover of a two-node cluster: while messages flow, the node that owns every user (whose
 * consumers RabbitMQ made the active ones) is killed with SIGKILL, and each user's connection on
 * the surviving node is watched until it receives a message the dead node had not delivered.
 * Rounds alternate the roles: the killed node is started again, its clients resume on it (its
 * consumers wait behind the survivor's), and the next round kills the survivor of the last one.
 *
 * What a round measures, per user:
 * - failover: from the kill to the survivor's first receipt of a message that no connection of
 *   the user had received before the kill and that the killed node's connection never received
 *   (so the dead node cannot have numbered it, except for a message it numbered in its last
 *   instant and did not get to send);
 * - the first new message's delay: its receipt minus the later of the kill and the time it was
 *   due, i.e. failover without the wait for the user's next message when none was pending (at a
 *   steady rate the first new message is often published after the kill);
 * - first message published after the kill: from the kill to the survivor's receipt of the first
 *   message due after it, which adds the time to the user's next message (the user's share of
 *   the rate) to the failover time;
 * - lost: confirmed by RabbitMQ and never received on the survivor, which was connected before
 *   the round's first message: must be 0.
 */
import { loadavg } from 'node:os';
import type { QueueType } from '../../src/config.js';
import { waitUntil } from '../../src/wait-until.js';
import { waitForOwnership, type OwnershipCheck } from '../env/consumers.js';
import { nowUs, sleep } from '../lib/time.js';
import type { Payload } from '../load/payload.js';
import { Tracker, type Accounting, type Receiver } from '../load/tracker.js';
import { counterDelta, type ClusterNode } from './cluster-nodes.js';
import { sum, type BenchContext } from './context.js';

/** Nearest-rank percentiles of a small sample, in ms. */
export interface Distribution {
  count: number;
  minMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export function distribution(valuesMs: readonly number[]): Distribution | undefined {
  if (valuesMs.length === 0) return undefined;
  const sorted = [...valuesMs].sort((a, b) => a - b);
  const at = (p: number): number => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] as number;
  const round = (v: number): number => Math.round(v * 10) / 10;
  return { count: sorted.length, minMs: round(sorted[0] as number), p50Ms: round(at(50)), p99Ms: round(at(99)), maxMs: round(at(100)) };
}

export interface FailoverRound extends Accounting {
  round: number;
  killed: string;
  survivor: string;
  /** RabbitMQ's view before the kill: the killed node's consumers active, the survivor's waiting. */
  ownership: OwnershipCheck;
  unconfirmed: number;
  /** Per user: kill to the survivor's first message the dead node had not delivered. */
  failoverMs: number[];
  /** Per user: that message's receipt minus the later of the kill and its due time. */
  firstNewDelayMs: number[];
  /** Per user: kill to the survivor's receipt of the first message due after the kill. */
  firstPublishedAfterKillMs: number[];
  /** Users whose survivor connection got no such message before the round ended. */
  noNewMessage: number;
  /** Longest due-to-receipt time of any message on the survivor in the round (ms). */
  worstLatencyMs: number;
  /** Survivor connections that closed during the round (reconnected with resume at once). */
  survivorReconnects: number;
  /** The survivor's cluster counters over the round (ownership changes, heals...). */
  counters: Record<string, number>;
  drained: boolean;
  loadavg: { before: number[]; after: number[] };
}

export interface FailoverResult {
  queueType: QueueType;
  users: number;
  rate: number;
  preKillMs: number;
  postKillMs: number;
  rounds: FailoverRound[];
  /** Over users x rounds. */
  failover: Distribution | undefined;
  firstNewDelay: Distribution | undefined;
  firstPublishedAfterKill: Distribution | undefined;
  lost: number;
  noNewMessage: number;
}

export interface FailoverPlan {
  queueType: QueueType;
  users: number;
  rate: number;
  rounds: number;
  preKillMs: number;
  postKillMs: number;
}

/** Receipts of one round on both nodes, split at the moment of the kill. */
class FailoverWatch {
  killUs = Number.POSITIVE_INFINITY;
  readonly survivorTracker: Tracker;
  worstLatencyUs = 0;
  /** Per user: numbers received by any connection before the kill, and by the killed node's connection at any time. */
  private readonly seenBeforeKill: Set<number>[];
  private readonly seenByKilled: Set<number>[];
  /** Per user: the survivor's receipts after the kill, in order. */
  private readonly afterKill: { k: number; dueUs: number; receivedUs: number }[][];

  constructor(
    private readonly phase: number,
    users: number,
  ) {
    this.survivorTracker = new Tracker(phase, users);
    this.seenBeforeKill = Array.from({ length: users }, () => new Set<number>());
    this.seenByKilled = Array.from({ length: users }, () => new Set<number>());
    this.afterKill = Array.from({ length: users }, () => []);
  }

  readonly killed: Receiver = {
    onPayload: (payload, receivedUs) => {
      if (payload.r !== this.phase) return;
      this.seenByKilled[payload.u]?.add(payload.k);
      if (receivedUs < this.killUs) this.seenBeforeKill[payload.u]?.add(payload.k);
    },
  };

  readonly survivor: Receiver = {
    onPayload: (payload: Payload, receivedUs: number) => {
      this.survivorTracker.onPayload(payload, receivedUs);
      if (payload.r !== this.phase) return;
      this.worstLatencyUs = Math.max(this.worstLatencyUs, receivedUs - payload.t);
      if (receivedUs < this.killUs) this.seenBeforeKill[payload.u]?.add(payload.k);
      else this.afterKill[payload.u]?.push({ k: payload.k, dueUs: payload.t, receivedUs });
    },
  };

  /** Per user, the failover times (ms), undefined where the survivor got no such message. */
  times(): { failover: (number | undefined)[]; firstNewDelay: (number | undefined)[]; firstPublishedAfter: (number | undefined)[] } {
    const failover: (number | undefined)[] = [];
    const firstNewDelay: (number | undefined)[] = [];
    const firstPublishedAfter: (number | undefined)[] = [];
    this.afterKill.forEach((receipts, u) => {
      const before = this.seenBeforeKill[u];
      const byKilled = this.seenByKilled[u];
      const fresh = receipts.find((r) => !before?.has(r.k) && !byKilled?.has(r.k));
      const later = receipts.find((r) => r.dueUs >= this.killUs);
      failover.push(fresh === undefined ? undefined : (fresh.receivedUs - this.killUs) / 1000);
      firstNewDelay.push(fresh === undefined ? undefined : (fresh.receivedUs - Math.max(this.killUs, fresh.dueUs)) / 1000);
      firstPublishedAfter.push(later === undefined ? undefined : (later.receivedUs - this.killUs) / 1000);
    });
    return { failover, firstNewDelay, firstPublishedAfter };
  }
}

const OWNERSHIP_TIMEOUT_MS = 30_000;
const DRAIN_TIMEOUT_MS = 30_000;

/** Reconnects (with resume) every survivor connection that closes, until stopped; counts them. */
function keepConnected(ctx: BenchContext, node: ClusterNode): { stop(): Promise<number> } {
  let reconnects = 0;
  let stopped = false;
  const busy = new Set<number>();
  const pending: Promise<void>[] = [];
  const timer = setInterval(() => {
    node.clients.forEach((client, u) => {
      if (stopped || client.open || busy.has(u)) return;
      busy.add(u);
      reconnects += 1;
      pending.push(
        client
          .connect(10_000)
          .then(() => undefined)
          .catch((error: unknown) => ctx.log(`failover: survivor client ${u} could not reconnect: ${(error as Error).message}`))
          .finally(() => busy.delete(u)),
      );
    });
  }, 100);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await Promise.allSettled(pending);
      return reconnects;
    },
  };
}

/**
 * Runs the rounds on a formed cluster (`nodes[0]` owns every user, `nodes[1]` waits, both with
 * every user connected). Each round's killed node is started again and its clients resume before
 * the next round. Rounds that cannot start (ownership not as expected) end the scenario early.
 */
export async function failoverRounds(
  ctx: BenchContext,
  plan: FailoverPlan,
  nodes: [ClusterNode, ClusterNode],
  users: readonly string[],
  management: { url: string; vhost: string },
  firstOwnership: OwnershipCheck,
): Promise<{ result: FailoverResult; error?: string }> {
  const rounds: FailoverRound[] = [];
  let ownership = firstOwnership;
  let error: string | undefined;
  for (let round = 1; round <= plan.rounds; round += 1) {
    const owner = nodes[(round - 1) % 2] as ClusterNode;
    const survivor = nodes[round % 2] as ClusterNode;
    if (!ownership.ok) {
      error = `round ${round}: ${ownership.matching}/${users.length} queues had ${owner.nodeId} active and ${survivor.nodeId} waiting (e.g. ${ownership.example ?? '?'})`;
      break;
    }
    const result = await oneRound(ctx, plan, round, owner, survivor, users, ownership);
    rounds.push(result);
    const failed = result.failoverMs.length < users.length ? `, ${users.length - result.failoverMs.length} users got nothing new` : '';
    const d = distribution(result.failoverMs);
    ctx.log(
      `failover round ${round}: killed ${result.killed}; failover p50 ${d?.p50Ms ?? 'n/a'} ms, p99 ${d?.p99Ms ?? 'n/a'} ms, max ${d?.maxMs ?? 'n/a'} ms${failed}; lost ${result.lost}, duplicates ${result.duplicates}, survivor reconnects ${result.survivorReconnects}`,
    );
    if (round === plan.rounds) break;
    // The killed node comes back; its clients resume on it and wait behind the survivor.
    await owner.start();
    await owner.connect(users);
    ownership = await waitForOwnership(
      management.url,
      management.vhost,
      users,
      { owner: survivor.nodeId, waiting: [owner.nodeId] },
      OWNERSHIP_TIMEOUT_MS,
    );
  }
  const all = (pick: (r: FailoverRound) => number[]): number[] => rounds.flatMap(pick);
  return {
    result: {
      queueType: plan.queueType,
      users: users.length,
      rate: plan.rate,
      preKillMs: plan.preKillMs,
      postKillMs: plan.postKillMs,
      rounds,
      failover: distribution(all((r) => r.failoverMs)),
      firstNewDelay: distribution(all((r) => r.firstNewDelayMs)),
      firstPublishedAfterKill: distribution(all((r) => r.firstPublishedAfterKillMs)),
      lost: sum(rounds.map((r) => r.lost)),
      noNewMessage: sum(rounds.map((r) => r.noNewMessage)),
    },
    ...(error ? { error } : {}),
  };
}

async function oneRound(
  ctx: BenchContext,
  plan: FailoverPlan,
  round: number,
  owner: ClusterNode,
  survivor: ClusterNode,
  users: readonly string[],
  ownership: OwnershipCheck,
): Promise<FailoverRound> {
  const phase = ctx.nextPhase();
  const watch = new FailoverWatch(phase, users.length);
  owner.slot.current = watch.killed;
  survivor.slot.current = watch.survivor;
  const killed = owner.nodeId;
  const countersBefore = await survivor.clusterCounters();
  const loadBefore = loadavg();
  ctx.log(`failover round ${round}: ${plan.rate} msgs/s to ${users.length} users; SIGKILL ${killed} after ${plan.preKillMs} ms`);
  const running = ctx.publisher.run({
    phase,
    users: [...users],
    mode: 'rate',
    rate: plan.rate,
    durationMs: plan.preKillMs + plan.postKillMs,
  });
  await sleep(plan.preKillMs);
  const reconnecting = keepConnected(ctx, survivor);
  watch.killUs = nowUs();
  await owner.kill();
  const report = await running;
  const expected = sum(report.published) - report.nacked.length - report.unconfirmed;
  const drained = await waitUntil(() => watch.survivorTracker.received >= expected, { timeoutMs: DRAIN_TIMEOUT_MS, intervalMs: 20 });
  // Late duplicates show up shortly after the last message.
  await sleep(300);
  const survivorReconnects = await reconnecting.stop();
  const countersAfter = await survivor.clusterCounters();
  const times = watch.times();
  const failoverMs = times.failover.filter((v): v is number => v !== undefined);
  return {
    round,
    killed,
    survivor: survivor.nodeId,
    ownership,
    unconfirmed: report.unconfirmed,
    failoverMs,
    firstNewDelayMs: times.firstNewDelay.filter((v): v is number => v !== undefined),
    firstPublishedAfterKillMs: times.firstPublishedAfter.filter((v): v is number => v !== undefined),
    noNewMessage: users.length - failoverMs.length,
    worstLatencyMs: Math.round(watch.worstLatencyUs / 100) / 10,
    survivorReconnects,
    counters: counterDelta(countersAfter, countersBefore),
    drained,
    loadavg: { before: loadBefore, after: loadavg() },
    ...watch.survivorTracker.account(report.published, report.nacked),
  };
}
