/**
 * Backlog drain, as after an outage of the clients' network: every inbox is filled first (N
 * messages per user, published with confirms while no consumer runs, then counted in the queues),
 * and only then do all the clients connect; measured from the first connect attempt to the receipt
 * of the last message (whose ack the client sends at once). Each system has its own queues, filled
 * again before each of its rounds; the systems alternate round by round like the throughput suite,
 * after one unrecorded warm-up round each (a small backlog), so that no system is measured cold.
 * The relay child keeps running between rounds (only its clients go), as the broker does for
 * Web-STOMP and the bench process for amqplib. Every round accounts for losses, duplicates and
 * order with the same tracker as the other phases, and counts the messages left in the queues
 * once the clients had gone and no consumer was left: every message must have been acked.
 */
import { watchCpu } from '../env/proc.js';
import type { Payload } from '../load/payload.js';
import { declareInboxes, queueStates } from '../load/queues.js';
import { Tracker, type Accounting, type Receiver } from '../load/tracker.js';
import { waitUntil } from '../../src/wait-until.js';
import { forEachLimit, nowUs, sleep, withTimeout } from '../lib/time.js';
import type { Plan } from '../options.js';
import { RelaySystem } from '../systems/relay-system.js';
import type { SystemName, SystemUnderTest } from '../systems/system.js';
import { connectWithRetry, type ConnectCounters } from './connect-retry.js';
import { sum, type BenchContext } from './context.js';
import { cpuPerMessage, cpuPids } from './phases.js';
import { profileWindow } from './profiling.js';
import { SHORT, makeSystem, rotate, stopAndClean, type Entry } from './suites.js';

export interface BacklogResult extends Accounting {
  system: SystemName;
  queueType: string;
  users: number;
  perUser: number;
  round: number;
  /** Time to publish and confirm the backlog (no consumer running), and the rate. */
  prefillMs: number;
  prefillPerSec: number;
  /** Ready messages in the queues just before the clients connected (should equal `expected`). */
  queued: number | undefined;
  /** From the first connect attempt until every client was consuming. */
  connectMs: number;
  /** Messages received before the last client was consuming. */
  receivedWhileConnecting: number;
  /** From the first connect attempt to the receipt of the last message. */
  drainMs: number;
  drained: boolean;
  /** Messages expected / drainMs: the drain throughput. */
  msgsPerSec: number;
  /** The rate once every client was consuming (the rest of the backlog over the rest of the time). */
  afterConnectPerSec: number | undefined;
  /** Messages in the queues once the clients had gone and no consumer was left: never acked. */
  leftInQueues: number | undefined;
  /** Relay only: connection attempts and refusals (1013 / HTTP 503) while connecting. */
  attempts: number | undefined;
  refusals: number | undefined;
  cpu: Record<string, number>;
  cpuUsPerMsg: Record<string, number>;
}

/** Feeds the tracker and notes the receipt time of the message that completed the backlog. */
class DrainRecorder implements Receiver {
  completedUs: number | undefined;

  constructor(
    readonly tracker: Tracker,
    private readonly expected: number,
  ) {}

  onPayload(payload: Payload, receivedUs: number): void {
    this.tracker.onPayload(payload, receivedUs);
    if (this.completedUs === undefined && this.tracker.received >= this.expected) this.completedUs = receivedUs;
  }
}

/** Connects every user's consumer the way the system's own start does; the relay's clients retry refusals as real ones would. */
async function connectAll(system: SystemUnderTest, users: readonly string[]): Promise<ConnectCounters | undefined> {
  if (!(system instanceof RelaySystem)) {
    await system.start(users);
    return undefined;
  }
  const counters: ConnectCounters = { attempts: 0, refusals: 0, failures: {} };
  const clients = system.makeClients(users);
  system.clients.push(...clients);
  const deadline = Date.now() + 300_000;
  const outcome = await forEachLimit(clients, 100, (client) => connectWithRetry(client, deadline, counters), deadline);
  if (outcome.done !== users.length)
    throw new Error(`relay clients: ${outcome.failed} of ${users.length} could not connect (${outcome.errors.join('; ')})`);
  return counters;
}

/** Ready messages and consumers summed over the users' queues; undefined when a queue could not be checked. */
async function totals(ctx: BenchContext, users: readonly string[]): Promise<{ ready: number; consumers: number } | undefined> {
  const states = await withTimeout(queueStates(ctx.rabbitmqUrl, users, Date.now() + 120_000), 150_000, 'queue states').catch(
    () => undefined,
  );
  if (!states) return undefined;
  let ready = 0;
  let consumers = 0;
  for (const state of states) {
    if (state === undefined) return undefined;
    ready += state.ready;
    consumers += state.consumers;
  }
  return { ready, consumers };
}

/**
 * Ends a round: the clients go; the relay child stays up for the next round (stop() ends it at the
 * end of the suite). Waits until no queue has a consumer: the relay keeps a user's consumer for
 * STREAM_LINGER_MS after the socket closed (for a resume), and one still running during the next
 * fill would take messages before the clock starts. Returns the ready messages then in the queues:
 * with no consumer left every unacked message is back among them, so these were never acked.
 */
async function disconnectAll(ctx: BenchContext, system: SystemUnderTest, users: readonly string[]): Promise<number | undefined> {
  if (system instanceof RelaySystem && system.relay) {
    for (const client of system.clients) client.close();
    system.clients = [];
  } else {
    await system.stop();
  }
  const deadline = Date.now() + 60_000;
  let state = await totals(ctx, users);
  while (state?.consumers !== 0 && Date.now() < deadline) {
    await sleep(1_000);
    state = await totals(ctx, users);
  }
  if (state?.consumers !== 0) {
    ctx.log(`WARNING: ${state?.consumers ?? 'unknown'} consumers still on the queues 60 s after the clients left`);
    return undefined;
  }
  return state.ready;
}

/** One round on a system with no client connected and empty queues: fill, connect, drain, check the queues, disconnect. */
export async function backlogPhase(
  ctx: BenchContext,
  system: SystemUnderTest,
  users: readonly string[],
  queueType: string,
  perUser: number,
  round: number,
): Promise<BacklogResult> {
  const phase = ctx.nextPhase();
  const tracker = new Tracker(phase, users.length);
  ctx.slot.current = { onPayload: () => undefined };
  const prefillStart = Date.now();
  const report = await ctx.publisher.run({
    phase,
    users: [...users],
    mode: 'max',
    totalMessages: users.length * perUser,
    durationMs: 600_000,
  });
  const prefillMs = Date.now() - prefillStart;
  const expected = sum(report.published) - report.nacked.length - report.unconfirmed;
  const queued = (await totals(ctx, users))?.ready;
  const recorder = new DrainRecorder(tracker, expected);
  ctx.slot.current = recorder;
  // The relay child is started before the clock: the figure is the drain, not the process start-up.
  if (system instanceof RelaySystem) await system.startRelay();
  const profile = await profileWindow(ctx, system.relay, `${system.name}-backlog-${queueType}-${users.length}x${perUser}-round${round}`);
  const cpu = watchCpu(cpuPids(ctx, system));
  const startUs = nowUs();
  let counters: ConnectCounters | undefined;
  let connectedUs: number;
  let receivedWhileConnecting: number;
  let drained: boolean;
  let cpuUse: Record<string, number>;
  try {
    counters = await connectAll(system, users);
    connectedUs = nowUs();
    receivedWhileConnecting = tracker.received;
    drained = await waitUntil(() => recorder.completedUs !== undefined, { timeoutMs: 120_000 + expected, intervalMs: 10 });
  } finally {
    cpuUse = cpu.stop();
    await profile.stop();
  }
  const endUs = recorder.completedUs ?? nowUs();
  // Late duplicates show up shortly after the last message.
  await sleep(500);
  const accounting = tracker.account(report.published, report.nacked);
  const leftInQueues = await withTimeout(disconnectAll(ctx, system, users), 120_000, `disconnect ${system.name}`).catch(
    (error: unknown) => {
      ctx.log(`${(error as Error).message}`);
      return undefined;
    },
  );
  const drainMs = Math.round((endUs - startUs) / 1000);
  const msgsPerSec = Math.round(expected / Math.max(0.001, (endUs - startUs) / 1e6));
  const afterUs = endUs - connectedUs;
  return {
    system: system.name,
    queueType,
    users: users.length,
    perUser,
    round,
    prefillMs,
    prefillPerSec: Math.round(sum(report.published) / Math.max(0.001, prefillMs / 1000)),
    queued,
    connectMs: Math.round((connectedUs - startUs) / 1000),
    receivedWhileConnecting,
    drainMs,
    drained,
    msgsPerSec,
    afterConnectPerSec: afterUs > 100_000 ? Math.round((expected - receivedWhileConnecting) / (afterUs / 1e6)) : undefined,
    leftInQueues,
    attempts: counters?.attempts,
    refusals: counters?.refusals,
    cpu: cpuUse,
    cpuUsPerMsg: cpuPerMessage(cpuUse, msgsPerSec),
    ...accounting,
  };
}

/** Messages per user of the unrecorded warm-up round: enough to run every path (connect, deliver, ack) hot. */
const WARMUP_PER_USER = 20;

/** Every backlog suite of the plan (queue type x users), each system on its own queues, rounds alternating. */
export async function runBacklog(
  ctx: BenchContext,
  plan: NonNullable<Plan['backlog']>,
  systems: SystemName[],
  nodeArgs: string[] | undefined,
): Promise<{ results: BacklogResult[]; errors: string[] }> {
  const results: BacklogResult[] = [];
  const errors: string[] = [];
  const fail = (entry: Entry, error: unknown): void => {
    const message = `${entry.label}: ${error instanceof Error ? error.message : String(error)}`;
    ctx.log(`FAILED ${message}`);
    errors.push(message);
    entry.ok = false;
  };
  for (const queueType of plan.queueTypes) {
    for (const userCount of plan.users) {
      const entries: Entry[] = systems.map((name) => {
        const tag = `${SHORT[name]}-b${queueType[0]}${userCount}`;
        return {
          name,
          users: Array.from({ length: userCount }, (_, i) => `bench-${ctx.runId}-${tag}-u${i}`),
          system: makeSystem(ctx, name, queueType, tag, nodeArgs),
          label: `${name} backlog ${queueType} ${userCount} users x ${plan.perUser}`,
          ok: true,
        };
      });
      try {
        for (const entry of entries) {
          ctx.log(`setup: ${entry.label}`);
          const declared = await declareInboxes(ctx.rabbitmqUrl, entry.users, queueType, Date.now() + 300_000).catch((error: unknown) => ({
            done: 0,
            failed: entry.users.length,
            errors: [(error as Error).message],
          }));
          if (declared.failed > 0) fail(entry, new Error(`could not declare ${declared.failed} queues: ${declared.errors.join('; ')}`));
        }
        for (let round = 0; round <= plan.rounds; round += 1) {
          for (const entry of rotate(entries, Math.max(0, round - 1))) {
            if (!entry.ok) continue;
            try {
              ctx.log(
                `backlog: ${entry.label}, ${round === 0 ? `warm-up (${WARMUP_PER_USER} per user, not recorded)` : `round ${round}/${plan.rounds}`}`,
              );
              const r = await backlogPhase(
                ctx,
                entry.system,
                entry.users,
                queueType,
                round === 0 ? Math.min(WARMUP_PER_USER, plan.perUser) : plan.perUser,
                round,
              );
              if (round > 0) results.push(r);
              ctx.log(
                `  ${r.expected} msgs (queued ${r.queued ?? '?'}, filled at ${r.prefillPerSec}/s) drained in ${r.drainMs} ms: ${r.msgsPerSec} msgs/s; all connected after ${r.connectMs} ms; lost ${r.lost}, duplicates ${r.duplicates}, out of order ${r.outOfOrder}, left in queues ${r.leftInQueues ?? '?'}, cpu ${JSON.stringify(r.cpu)}`,
              );
              if (!r.drained) throw new Error(`not drained: ${r.received} of ${r.expected} received`);
            } catch (error) {
              fail(entry, error);
            }
            await sleep(1_000);
          }
        }
      } finally {
        await stopAndClean(ctx, entries);
      }
    }
  }
  return { results, errors };
}
