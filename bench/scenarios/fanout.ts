/**
 * Topic fan-out: N inboxes follow one pattern, a relay child runs with one bench WebSocket client
 * connected per follower (all welcomed, so every inbox has its consumer), and one persistent
 * message is published to a matching topic on `inbox.topics` with publisher confirms. Two times
 * from the publish:
 * - to RabbitMQ's confirm: RabbitMQ confirms a routed message only once every queue it was routed
 *   to has taken it (classic: written; quorum: committed by a majority of replicas), so this is
 *   the moment the last follower's inbox has it;
 * - to each client's receipt of the `msg` frame through the relay (first, median, last client).
 * A figure is only kept when every client got exactly one message carrying the topic published
 * to (fanout-receipts.ts); otherwise the run is an error. Clients ack as in every scenario.
 * Receipt times are taken in the bench process, whose one thread reads all N sockets: at large N
 * the last receipt includes the bench's own turn through N frames (its CPU is in the results).
 *
 * Skipped, with the reason in the results: quorum above QUORUM_MAX followers (RabbitMQ's team
 * calls ~10,000 quorum queues too many for one cluster; 10,000 made the one-box 3.10 broker stop
 * accepting connections), classic when the broker's open-files limit is below followers + 200
 * (classic queues holding persistent messages hang when the broker runs out of file handles; see
 * ops/README.md, open files), and any run whose N sockets the bench's own open-files limit cannot
 * hold.
 */
import { randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import amqp from 'amqplib';
import { followTopic } from '../../src/amqp/topics.js';
import { TOPIC_EXCHANGE, type QueueSettings } from '../../src/amqp/topology.js';
import type { QueueType } from '../../src/config.js';
import { watchCpu } from '../env/proc.js';
import { declareInboxes, deleteInboxes, queueSettings } from '../load/queues.js';
import { waitUntil } from '../../src/wait-until.js';
import { forEachLimit, nowUs, sleep, withTimeout } from '../lib/time.js';
import { RelaySystem } from '../systems/relay-system.js';
import { CONNECT_CONCURRENCY, connectWithRetry, type ConnectCounters } from './connect-retry.js';
import type { BenchContext } from './context.js';
import { FanoutReceipts } from './fanout-receipts.js';

export interface FanoutPlan {
  queueTypes: QueueType[];
  followers: number[];
}

export interface FanoutResult {
  queueType: QueueType;
  followers: number;
  /** Declaring the inboxes and binding each to the topic exchange, in parallel (16 channels). */
  setupMs: number;
  /** Connecting one client per follower, CONNECT_CONCURRENCY handshakes in flight, until all were welcomed. */
  connectMs: number;
  /** Connection attempts (refusals retried after their retry-after). */
  connectAttempts: number;
  /** Failed connection attempts by reason (each retried). */
  connectFailures: Record<string, number>;
  /** Publish to confirm: every follower's inbox has the message. */
  publishToLastInboxMs: number;
  /** Publish to the first client's receipt of the `msg` frame. */
  publishToFirstClientMs: number;
  /** Publish to the median client's receipt. */
  publishToClientP50Ms: number;
  /** Publish to the last client's receipt: every follower's client has the message. */
  publishToLastClientMs: number;
  /** Clients that received exactly one message, with the topic published to (must equal `followers`). */
  clientsWithOne: number;
  /** CPU from the publish to the last receipt, % of one core (relay, broker, Redis, bench, machine, others). */
  cpu: Record<string, number>;
  /** Load average (1, 5, 15 min) just before the publish. */
  loadavg: number[];
}

/** Above this many followers quorum queues are skipped (see the module comment). */
export const QUORUM_MAX = 2_000;
/** Open files the bench keeps beside its N client sockets (broker and Redis connections, logs). */
const BENCH_SPARE_FILES = 1_000;
/** Bounds of each step, so that a run always ends. */
const SETUP_BOUND_MS = 900_000;
const CONNECT_BOUND_MS = 300_000;
const DELIVERY_BOUND_MS = 300_000;
/** After the last client's receipt, how long to keep listening for a second copy. */
const DUPLICATE_WATCH_MS = 2_000;

/** Open-files limits of the broker and of the bench process (undefined: unknown). */
export interface FdLimits {
  broker: number | undefined;
  bench: number | undefined;
}

export async function runFanout(
  ctx: BenchContext,
  plan: FanoutPlan,
  fds: FdLimits,
): Promise<{ results: FanoutResult[]; skipped: string[]; errors: string[] }> {
  const results: FanoutResult[] = [];
  const skipped: string[] = [];
  const errors: string[] = [];
  for (const queueType of plan.queueTypes) {
    for (const followers of plan.followers) {
      const reason = skipReason(queueType, followers, fds);
      if (reason) {
        skipped.push(`fan-out ${queueType} x ${followers}: ${reason}`);
        ctx.log(`SKIP fan-out ${queueType} x ${followers}: ${reason}`);
        continue;
      }
      try {
        const r = await fanoutOnce(ctx, queueType, followers);
        results.push(r);
        ctx.log(
          `fan-out ${queueType} x ${followers}: publish to last inbox ${r.publishToLastInboxMs} ms, to clients first / p50 / last ${r.publishToFirstClientMs} / ${r.publishToClientP50Ms} / ${r.publishToLastClientMs} ms (${r.clientsWithOne} clients with one copy)`,
        );
      } catch (error) {
        const message = `fan-out ${queueType} x ${followers}: ${(error as Error).message}`;
        errors.push(message);
        ctx.log(`ERROR ${message}`);
      }
    }
  }
  return { results, skipped, errors };
}

function skipReason(queueType: QueueType, followers: number, fds: FdLimits): string | undefined {
  if (queueType === 'quorum' && followers > QUORUM_MAX) {
    return `more than ${QUORUM_MAX} quorum queues on one box (10,000 made RabbitMQ 3.10 stop accepting connections here)`;
  }
  // A classic queue holding persistent messages keeps files open; the broker needs some for itself.
  if (queueType === 'classic' && fds.broker !== undefined && followers + 200 > fds.broker) {
    return `RabbitMQ's open-files limit is ${fds.broker}: ${followers} classic queues with persistent messages would hang it (raise nofile, ops/README.md)`;
  }
  // The bench holds one socket per client (and the relay child, with the same limit, one per connection).
  if (fds.bench !== undefined && followers + BENCH_SPARE_FILES > fds.bench) {
    return `the bench's open-files limit is ${fds.bench}: ${followers} WebSocket clients need about ${followers + BENCH_SPARE_FILES} (raise it with ulimit -n)`;
  }
  return undefined;
}

async function fanoutOnce(ctx: BenchContext, queueType: QueueType, followers: number): Promise<FanoutResult> {
  const name = `fan-${queueType}-${followers}`;
  const users = Array.from({ length: followers }, (_, i) => `bench-${ctx.runId}-${name}-${i}`);
  // A topic unique to the run: no other inbox follows it.
  const root = `bench_${ctx.runId}_${queueType}`;
  const topic = `${root}.news.sports.x`;
  const settings: QueueSettings = queueSettings(queueType);
  const system = new RelaySystem(
    {
      rabbitmqUrl: ctx.rabbitmqUrl,
      redisUrl: ctx.redisUrl,
      redisKeyPrefix: `bench-${ctx.runId}-${name}:`,
      jwtSecret: ctx.jwtSecret,
      queueType,
      window: ctx.window,
      logFile: `${ctx.resultsDir}/relay-${ctx.runId}-${name}.log.tmp`,
      onStarted: (pid) => ctx.priorities.apply(pid),
    },
    ctx.slot,
  );
  const model = await amqp.connect(ctx.rabbitmqUrl);
  model.on('error', () => undefined);
  try {
    const started = Date.now();
    const declared = await declareInboxes(ctx.rabbitmqUrl, users, queueType, Date.now() + SETUP_BOUND_MS);
    if (declared.failed > 0) throw new Error(`declaring inboxes failed: ${declared.errors.slice(0, 3).join('; ')}`);
    const open = async () => {
      const channel = await model.createChannel();
      channel.on('error', () => undefined);
      return channel;
    };
    const bound = await forEachLimit(users, 16, (user) => followTopic(open, user, `${root}.news.#`), Date.now() + SETUP_BOUND_MS);
    if (bound.failed > 0) throw new Error(`binding failed: ${bound.errors.slice(0, 3).join('; ')}`);
    const setupMs = Date.now() - started;
    ctx.log(
      `fan-out ${queueType} x ${followers}: ${followers} inboxes declared and following in ${setupMs} ms (settings ${JSON.stringify(settings)})`,
    );

    const relay = await system.startRelay();
    const clients = system.makeClients(users);
    system.clients.push(...clients);
    const receipts = new FanoutReceipts(followers, topic);
    clients.forEach((client, index) => {
      client.onMsgFrame = (frame, receivedUs) => receipts.record(index, frame, receivedUs);
    });
    const counters: ConnectCounters = { attempts: 0, refusals: 0, failures: {} };
    const connectStart = Date.now();
    const connected = await forEachLimit(
      clients,
      CONNECT_CONCURRENCY,
      (client) => connectWithRetry(client, connectStart + CONNECT_BOUND_MS, counters),
      connectStart + CONNECT_BOUND_MS,
    );
    const connectMs = Date.now() - connectStart;
    if (connected.done !== followers) {
      throw new Error(
        `${connected.done} of ${followers} clients welcomed within ${CONNECT_BOUND_MS / 1000} s (${counters.attempts} attempts; failures ${JSON.stringify(counters.failures)}; ${connected.errors.join('; ')})`,
      );
    }
    ctx.log(`fan-out ${queueType} x ${followers}: ${followers} clients welcomed in ${connectMs} ms (${counters.attempts} attempts)`);

    const channel = await model.createConfirmChannel();
    const load = loadavg().map((v) => Math.round(v * 100) / 100);
    const cpu = watchCpu({ relay: relay.pid, broker: ctx.brokerPid, redis: ctx.redisPid, bench: process.pid });
    const publishedUs = nowUs();
    channel.publish(TOPIC_EXCHANGE, topic, Buffer.from('{"fanout":true}'), {
      messageId: randomUUID(),
      contentType: 'application/json',
      persistent: true,
    });
    await withTimeout(channel.waitForConfirms(), DELIVERY_BOUND_MS, 'fan-out confirm');
    const publishToLastInboxMs = (nowUs() - publishedUs) / 1000;
    await channel.close();
    await waitUntil(() => receipts.reached >= followers, { timeoutMs: DELIVERY_BOUND_MS, intervalMs: 20 });
    const cpuUse = cpu.stop();
    await sleep(DUPLICATE_WATCH_MS);
    const problem = receipts.verdict();
    if (problem) throw new Error(`${problem} (gaps ${system.stats.gaps}, repeated seqs ${system.stats.repeatedSeqs})`);
    const times = receipts.times(publishedUs);
    return {
      queueType,
      followers,
      setupMs,
      connectMs,
      connectAttempts: counters.attempts,
      connectFailures: counters.failures,
      publishToLastInboxMs,
      publishToFirstClientMs: round1(times.firstMs),
      publishToClientP50Ms: round1(times.p50Ms),
      publishToLastClientMs: round1(times.lastMs),
      clientsWithOne: followers,
      cpu: cpuUse,
      loadavg: load,
    };
  } finally {
    ctx.log(`fan-out ${queueType} x ${followers}: closing clients, stopping the relay, deleting inboxes`);
    await withTimeout(system.stop(), 90_000, 'stop the relay').catch((error: unknown) => ctx.log((error as Error).message));
    await model.close().catch(() => undefined);
    const deleted = await deleteInboxes(ctx.rabbitmqUrl, users, Date.now() + SETUP_BOUND_MS);
    if (deleted.failed > 0) ctx.log(`WARNING: ${deleted.failed} fan-out inboxes not deleted (node dist/bench/run.js --cleanup)`);
  }
}

const round1 = (ms: number): number => Math.round(ms * 10) / 10;
