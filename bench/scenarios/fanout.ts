/**
 * Topic fan-out: N inboxes follow one pattern, one persistent message is published to a matching
 * topic on `inbox.topics` with publisher confirms, and the scenario measures the time from the
 * publish to RabbitMQ's confirm. RabbitMQ confirms a routed message only once every queue it was
 * routed to has taken it (classic: written; quorum: committed by a majority of replicas), so the
 * confirm is the moment the last follower's inbox has it; the depths of all N inboxes are then
 * checked (each exactly 1) so that a figure never comes from a publish that missed followers.
 *
 * Skipped, with the reason in the results: quorum above QUORUM_MAX followers (RabbitMQ's team
 * calls ~10,000 quorum queues too many for one cluster; 10,000 made the one-box 3.10 broker stop
 * accepting connections) and classic when the broker's open-files limit is below followers + 200
 * (classic queues holding persistent messages hang when the broker runs out of file handles; see
 * ops/README.md, open files).
 */
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { followTopic } from '../../src/amqp/topics.js';
import { TOPIC_EXCHANGE, type QueueSettings } from '../../src/amqp/topology.js';
import type { QueueType } from '../../src/config.js';
import { declareInboxes, deleteInboxes, queueDepths, queueSettings } from '../load/queues.js';
import { forEachLimit, withTimeout } from '../lib/time.js';

export interface FanoutPlan {
  queueTypes: QueueType[];
  followers: number[];
}

export interface FanoutResult {
  queueType: QueueType;
  followers: number;
  /** Declaring the inboxes and binding each to the topic exchange, in parallel (16 channels). */
  setupMs: number;
  /** Publish to confirm: every follower's inbox has the message. */
  publishToLastInboxMs: number;
  /** Inboxes holding exactly one message afterwards (must equal `followers`). */
  inboxesWithOne: number;
}

/** Above this many followers quorum queues are skipped (see the module comment). */
export const QUORUM_MAX = 2_000;

export async function runFanout(
  rabbitmqUrl: string,
  runId: string,
  plan: FanoutPlan,
  brokerFdLimit: number | undefined,
  log: (line: string) => void,
): Promise<{ results: FanoutResult[]; skipped: string[]; errors: string[] }> {
  const results: FanoutResult[] = [];
  const skipped: string[] = [];
  const errors: string[] = [];
  for (const queueType of plan.queueTypes) {
    for (const followers of plan.followers) {
      const reason = skipReason(queueType, followers, brokerFdLimit);
      if (reason) {
        skipped.push(`fan-out ${queueType} x ${followers}: ${reason}`);
        log(`SKIP fan-out ${queueType} x ${followers}: ${reason}`);
        continue;
      }
      try {
        const result = await fanoutOnce(rabbitmqUrl, runId, queueType, followers, log);
        results.push(result);
        log(
          `fan-out ${queueType} x ${followers}: publish to last inbox ${result.publishToLastInboxMs} ms (setup ${result.setupMs} ms, ${result.inboxesWithOne} inboxes with one copy)`,
        );
      } catch (error) {
        errors.push(`fan-out ${queueType} x ${followers}: ${(error as Error).message}`);
      }
    }
  }
  return { results, skipped, errors };
}

function skipReason(queueType: QueueType, followers: number, brokerFdLimit: number | undefined): string | undefined {
  if (queueType === 'quorum' && followers > QUORUM_MAX) {
    return `more than ${QUORUM_MAX} quorum queues on one box (10,000 made RabbitMQ 3.10 stop accepting connections here)`;
  }
  // A classic queue holding persistent messages keeps files open; the broker needs some for itself.
  if (queueType === 'classic' && brokerFdLimit !== undefined && followers + 200 > brokerFdLimit) {
    return `RabbitMQ's open-files limit is ${brokerFdLimit}: ${followers} classic queues with persistent messages would hang it (raise nofile, ops/README.md)`;
  }
  return undefined;
}

async function fanoutOnce(rabbitmqUrl: string, runId: string, queueType: QueueType, followers: number, log: (line: string) => void) {
  const users = Array.from({ length: followers }, (_, i) => `bench-${runId}-fan-${queueType}-${i}`);
  // A topic unique to the run: no other inbox follows it.
  const root = `bench_${runId}_${queueType}`;
  const settings: QueueSettings = queueSettings(queueType);
  const model = await amqp.connect(rabbitmqUrl);
  model.on('error', () => undefined);
  try {
    const started = Date.now();
    const declared = await declareInboxes(rabbitmqUrl, users, queueType, Date.now() + 900_000);
    if (declared.failed > 0) throw new Error(`declaring inboxes failed: ${declared.errors.slice(0, 3).join('; ')}`);
    const open = async () => {
      const channel = await model.createChannel();
      channel.on('error', () => undefined);
      return channel;
    };
    const bound = await forEachLimit(users, 16, (user) => followTopic(open, user, `${root}.news.#`), Date.now() + 900_000);
    if (bound.failed > 0) throw new Error(`binding failed: ${bound.errors.slice(0, 3).join('; ')}`);
    const setupMs = Date.now() - started;
    log(
      `fan-out ${queueType} x ${followers}: ${followers} inboxes declared and following in ${setupMs} ms (settings ${JSON.stringify(settings)})`,
    );
    const channel = await model.createConfirmChannel();
    const t0 = process.hrtime.bigint();
    channel.publish(TOPIC_EXCHANGE, `${root}.news.sports.x`, Buffer.from('{"fanout":true}'), {
      messageId: randomUUID(),
      contentType: 'application/json',
      persistent: true,
    });
    await withTimeout(channel.waitForConfirms(), 300_000, 'fan-out confirm');
    const publishToLastInboxMs = Number((process.hrtime.bigint() - t0) / 1_000n) / 1000;
    await channel.close();
    const depths = await queueDepths(rabbitmqUrl, users, Date.now() + 300_000);
    const inboxesWithOne = depths.filter((depth) => depth === 1).length;
    if (inboxesWithOne !== followers) throw new Error(`${inboxesWithOne} of ${followers} inboxes hold exactly one copy`);
    return { queueType, followers, setupMs, publishToLastInboxMs, inboxesWithOne };
  } finally {
    await model.close().catch(() => undefined);
    const deleted = await deleteInboxes(rabbitmqUrl, users, Date.now() + 900_000);
    if (deleted.failed > 0) log(`WARNING: ${deleted.failed} fan-out inboxes not deleted (node dist/bench/run.js --cleanup)`);
  }
}
