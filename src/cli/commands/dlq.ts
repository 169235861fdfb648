/**
 * `dlq list | replay | purge` on the dead-letter queue (inbox.dead unless --queue).
 *
 * list and replay take messages with basic.get and manual ack, and always take every message the
 * queue held when they started (that bound also keeps a copy that dies again at once from being
 * replayed twice in one run). Whatever they do not remove is still unacked on their channel when
 * they close it, and RabbitMQ returns those messages to the queue in their order: nothing is lost
 * or reordered. Taking them all matters for quorum queues, which put returned messages behind
 * messages returned earlier: returning only the first N of a queue that was listed before would
 * move them behind the rest.
 *
 * replay seals each copy with REPLAY_KEY (replay-seal.ts), the relays' key: without it the relays
 * take a copy of a message they numbered before for that message and do not deliver it again,
 * so replay refuses to run without the key.
 */
import type { ConfirmChannel, GetMessage, Options } from 'amqplib';
import { DEAD_LETTER_QUEUE, INBOX_EXCHANGE, provisionInbox, queueSettingsOf } from '../../amqp/topology.js';
import { errorMessage } from '../../errors.js';
import { isValidUserId } from '../../protocol/user-id.js';
import { waitUntil } from '../../wait-until.js';
import { ReplaySeal } from '../../delivery/replay-seal.js';
import { failure, usageError } from '../cli-error.js';
import { checkQueue, withBroker, type BrokerSession } from '../broker.js';
import { flag, intOption, stringOption, type Invocation } from '../commands.js';
import {
  deadLetterUser,
  matchesFilter,
  replayProperties,
  summarize,
  type DeadLetterFilter,
  type DeadLetterSummary,
} from '../dead-letter.js';
import type { Output } from '../io.js';
import { loadOperatorConfig, type OperatorConfig } from '../operator-config.js';
import type { Env } from '../../config.js';

const MAX_LIST = 10_000;
const RETURN_WAIT_MS = 3_000;

function queueOf(invocation: Invocation): string {
  const queue = stringOption(invocation, 'queue') ?? DEAD_LETTER_QUEUE;
  if (!/^[A-Za-z0-9._:@-]{1,255}$/.test(queue))
    throw usageError(`${invocation.spec.name}: --queue must be a queue name of [A-Za-z0-9._:@-]`);
  return queue;
}

async function depthOf(session: BrokerSession, queue: string): Promise<number> {
  const state = await checkQueue(session, queue);
  if (!state) throw failure(`queue ${queue} does not exist (a relay declares it at start, or load ops/rabbitmq/definitions.json)`);
  return state.messageCount;
}

/**
 * Waits (briefly, best effort) until the messages this command left unacked are ready again:
 * a quorum queue takes them back a moment after the channel closed, and a second command run
 * at once should see them.
 */
async function awaitReturned(session: BrokerSession, queue: string, expected: number): Promise<void> {
  await waitUntil(
    async () => {
      const state = await checkQueue(session, queue).catch(() => undefined);
      return !state || state.messageCount >= expected;
    },
    { timeoutMs: RETURN_WAIT_MS, intervalMs: 50 },
  );
}

/**
 * RabbitMQ 4.0-4.2 count a message returned by a channel close as a delivery, and quorum queues
 * there drop a message after 20 deliveries unless declared with x-delivery-limit=-1.
 */
export function deliveryLimitWarning(serverVersion: string | undefined): string | undefined {
  const match = /^(\d+)\.(\d+)\./.exec(serverVersion ?? '');
  if (!match || Number(match[1]) !== 4 || Number(match[2]) > 2) return undefined;
  return (
    `RabbitMQ ${serverVersion} counts each list or replay as a delivery of every dead letter; a quorum ` +
    'dead-letter queue without x-delivery-limit=-1 drops a message after 20 of them'
  );
}

/** `--user` and `--reason` of `dlq list`, checked before the broker is touched. */
function listFilter(invocation: Invocation): DeadLetterFilter {
  const user = stringOption(invocation, 'user');
  if (user !== undefined && !isValidUserId(user)) throw usageError('dlq list: --user must be 1-128 characters of [A-Za-z0-9._:@-]');
  const reason = stringOption(invocation, 'reason');
  if (reason !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(reason)) {
    throw usageError('dlq list: --reason must be a reason such as client-nack, nack-limit, delivery_limit or rejected');
  }
  return { ...(user === undefined ? {} : { user }), ...(reason === undefined ? {} : { reason }) };
}

/** The human line of one dead letter: the relay's reason next to RabbitMQ's (`-` where there is none). */
function listLine(m: DeadLetterSummary, bodies: boolean): string {
  return (
    `#${m.position} id=${m.messageId ?? '-'} user=${m.user ?? '-'} relay-reason=${m.relayReason ?? '-'}` +
    ` rabbitmq-reason=${m.rabbitmqReason ?? '-'} queue=${m.queue ?? '-'} deaths=${m.deaths}` +
    ` replays=${m.replays} died=${m.diedAt ?? '-'} type=${m.contentType ?? '-'} bytes=${m.bytes}` +
    (bodies ? ` body=${JSON.stringify(m.body)}` : '')
  );
}

export async function dlqList(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const queue = queueOf(invocation);
  const limit = intOption(invocation, 'limit', 20, 1, MAX_LIST);
  const bodies = flag(invocation, 'bodies');
  const filter = listFilter(invocation);
  const config = loadOperatorConfig(env);
  const { depth, matched, messages, warnings } = await withBroker(config.rabbitmqUrls, 'dlq list', async (session) => {
    const depth = await depthOf(session, queue);
    const warning = deliveryLimitWarning(session.serverVersion);
    const channel = await session.channel();
    const messages: DeadLetterSummary[] = [];
    let taken = 0;
    let matched = 0;
    try {
      while (taken < depth) {
        const message = await channel.get(queue, { noAck: false });
        if (message === false) break;
        taken += 1;
        // Every message is taken, matching or not, so that all of them return in order.
        if (!matchesFilter(summarize(taken, message, false), filter)) continue;
        matched += 1;
        if (messages.length < limit) messages.push(summarize(taken, message, bodies));
      }
    } catch (error) {
      throw failure(`cannot read ${queue}: ${errorMessage(error)}`, error);
    } finally {
      // Nothing was acked: closing the channel returns every message, in order.
      await channel.close().catch(() => undefined);
    }
    if (taken > 0) await awaitReturned(session, queue, depth);
    return { depth, matched, messages, warnings: warning ? [warning] : [] };
  });
  const filtered = Object.entries(filter).map(([name, value]) => `${name}=${value}`);
  output.result({ queue, depth, filter, matched, listed: messages.length, messages, warnings }, () => [
    ...warnings.map((warning) => `warning: ${warning}`),
    `${queue}: ${depth} ready message(s)` +
      (filtered.length > 0 ? `, ${matched} with ${filtered.join(' ')}` : '') +
      `; showing ${messages.length}`,
    ...messages.map((m) => listLine(m, bodies)),
  ]);
  return 0;
}

interface ReplayReport {
  queue: string;
  /** Names REPLAY_KEY (replay-seal.ts): the relays log the same value at start when they hold the same key. */
  keyFingerprint: string;
  scanned: number;
  replayed: { messageId: string; user: string }[];
  /** Left in the queue because they cannot be replayed. */
  skipped: { position: number; messageId: string | null; reason: string }[];
  /** Set when replay stopped at a message it could not republish (that one and the rest stay queued). */
  failed?: { messageId: string; user: string; error: string };
  warnings: string[];
}

function publishConfirmed(
  channel: ConfirmChannel,
  user: string,
  message: GetMessage,
  options: Options.Publish,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no confirm from RabbitMQ within ${timeoutMs} ms`)), timeoutMs);
    try {
      channel.publish(INBOX_EXCHANGE, user, message.content, options, (error: unknown) => {
        clearTimeout(timer);
        if (error) reject(new Error(`RabbitMQ refused the copy (inbox full or queue unavailable)`));
        else resolve();
      });
    } catch (error) {
      clearTimeout(timer);
      reject(error instanceof Error ? error : new Error(String(error)));
    }
  });
}

async function replay(
  session: BrokerSession,
  config: OperatorConfig,
  queue: string,
  limit: number,
  onlyUser: string | undefined,
  seal: ReplaySeal,
): Promise<ReplayReport> {
  const report: ReplayReport = { queue, keyFingerprint: seal.fingerprint(), scanned: 0, replayed: [], skipped: [], warnings: [] };
  const depth = await depthOf(session, queue);
  const warning = deliveryLimitWarning(session.serverVersion);
  if (warning) report.warnings.push(warning);
  const settings = queueSettingsOf(config);
  const provisioned = new Set<string>();
  const channel = await session.confirmChannel();
  try {
    while (report.scanned < depth) {
      let message;
      try {
        message = await channel.get(queue, { noAck: false });
      } catch (error) {
        // The channel is gone (RabbitMQ returned what it held); report what was done.
        report.failed ??= { messageId: '-', user: '-', error: `cannot read ${queue}: ${errorMessage(error)}` };
        break;
      }
      if (message === false) break;
      report.scanned += 1;
      const position = report.scanned;
      // Done or stopped: keep taking (without replaying) so that everything returns in order.
      if (report.failed || report.replayed.length >= limit) continue;
      const messageId = typeof message.properties.messageId === 'string' ? message.properties.messageId : null;
      const user = deadLetterUser(message.properties);
      if (onlyUser !== undefined && user !== onlyUser) continue;
      if (!user) {
        report.skipped.push({ position, messageId, reason: 'no user: neither x-death nor the routing key names a valid user id' });
        continue;
      }
      if (messageId === null) {
        report.skipped.push({ position, messageId, reason: 'no messageId: the relay would dead-letter it again' });
        continue;
      }
      try {
        if (!provisioned.has(user)) {
          await provisionInbox(() => session.channel(), user, settings);
          provisioned.add(user);
        }
        await publishConfirmed(channel, user, message, replayProperties(message, user, seal), config.publishTimeoutMs);
      } catch (error) {
        report.failed = { messageId, user, error: errorMessage(error) };
        continue;
      }
      // Only now that RabbitMQ confirmed the copy does the dead letter go.
      channel.ack(message);
      report.replayed.push({ messageId, user });
    }
  } finally {
    // Messages taken but not replayed are unacked: closing the channel returns them in order.
    await channel.close().catch(() => undefined);
  }
  if (report.scanned > report.replayed.length) await awaitReturned(session, queue, depth - report.replayed.length);
  return report;
}

export async function dlqReplay(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const queue = queueOf(invocation);
  const limit = intOption(invocation, 'limit', Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER);
  const onlyUser = stringOption(invocation, 'user');
  if (onlyUser !== undefined && !isValidUserId(onlyUser))
    throw usageError('dlq replay: --user must be 1-128 characters of [A-Za-z0-9._:@-]');
  const config = loadOperatorConfig(env);
  if (config.replayKeys.length === 0) {
    throw usageError(
      "dlq replay: REPLAY_KEY is not set; set it to the relays' REPLAY_KEY (without a seal made with it, the relays take a copy " +
        'of a message they numbered before for that message and do not deliver it again)',
    );
  }
  const seal = new ReplaySeal(config.replayKeys);
  const report = await withBroker(config.rabbitmqUrls, 'dlq replay', (session) => replay(session, config, queue, limit, onlyUser, seal));
  output.result({ ok: report.failed === undefined, ...report }, () => [
    ...report.warnings.map((warning) => `warning: ${warning}`),
    `${queue}: scanned ${report.scanned}, replayed ${report.replayed.length}, skipped ${report.skipped.length}` +
      ` (sealed with REPLAY_KEY ${report.keyFingerprint})`,
    ...report.replayed.map((r) => `replayed id=${r.messageId} user=${r.user}`),
    ...report.skipped.map((s) => `skipped #${s.position} id=${s.messageId ?? '-'}: ${s.reason}`),
    ...(report.failed
      ? [`FAILED at id=${report.failed.messageId} user=${report.failed.user}: ${report.failed.error} (it and the rest stay queued)`]
      : []),
  ]);
  return report.failed ? 1 : 0;
}

export async function dlqPurge(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const queue = queueOf(invocation);
  if (!flag(invocation, 'yes')) {
    throw usageError(`dlq purge deletes every ready message in ${queue} for good; run "inbox-relay dlq list" first, then add --yes`);
  }
  const config = loadOperatorConfig(env);
  const purged = await withBroker(config.rabbitmqUrls, 'dlq purge', async (session) => {
    await depthOf(session, queue);
    const channel = await session.channel();
    try {
      return (await channel.purgeQueue(queue)).messageCount;
    } catch (error) {
      throw failure(`cannot purge ${queue}: ${errorMessage(error)}`, error);
    } finally {
      await channel.close().catch(() => undefined);
    }
  });
  output.result({ queue, purged }, () => [`${queue}: purged ${purged} message(s)`]);
  return 0;
}
