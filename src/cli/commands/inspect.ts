/**
 * `inspect <user>`: the user's queue as RabbitMQ sees it (with which relay node owns the user:
 * the node of the active consumer, and which nodes wait with a consumer of their own: a node
 * consumes while it holds connections of the user, and for STREAM_LINGER_MS after), and the
 * user's numbering as the state store holds it. Read-only: checkQueue is passive and the store is read with `peek`, so a user
 * that never existed stays absent.
 */
import { inboxQueueName } from '../../amqp/topology.js';
import type { Env } from '../../config.js';
import { errorMessage } from '../../errors.js';
import { isValidUserId } from '../../protocol/user-id.js';
import { RedisStore } from '../../store/redis-store.js';
import type { StreamMeta } from '../../store/store.js';
import { usageError } from '../cli-error.js';
import { checkQueue, withBroker } from '../broker.js';
import type { Invocation } from '../commands.js';
import type { Output } from '../io.js';
import { queueDetails, type QueueConsumer, type QueueDetails, type UnackedCount } from '../management-api.js';
import { loadOperatorConfig, type OperatorConfig } from '../operator-config.js';

const STORE_TIMEOUT_MS = 5_000;

type StateReport =
  | { known: true; present: false }
  | {
      known: true;
      present: true;
      epoch: string;
      seq: number;
      acked: number;
      pending: number;
      history: { from: number; to: number; count: number } | null;
    }
  | { known: false; reason: string };

function describeMeta(meta: StreamMeta | undefined): StateReport {
  if (!meta) return { known: true, present: false };
  const count = Math.max(0, meta.seq - meta.start + 1);
  return {
    known: true,
    present: true,
    epoch: meta.epoch,
    seq: meta.seq,
    acked: meta.acked,
    pending: Math.max(0, meta.seq - meta.acked),
    history: count > 0 ? { from: meta.start, to: meta.seq, count } : null,
  };
}

async function readState(config: OperatorConfig, user: string): Promise<StateReport> {
  if (!config.redis)
    return { known: false, reason: 'neither REDIS_URL nor REDIS_SENTINELS is set: each node keeps its state in its own memory' };
  const store = new RedisStore({
    url: config.redis,
    keyPrefix: config.redisKeyPrefix,
    limits: { maxCount: config.historyMaxCount, maxAgeMs: config.historyMaxAgeMs },
    commandTimeoutMs: STORE_TIMEOUT_MS,
  });
  store.redis.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${STORE_TIMEOUT_MS} ms`)), STORE_TIMEOUT_MS);
  });
  try {
    await Promise.race([store.connect(), timeout]);
    const meta = await store.peek(user);
    await store.close();
    return describeMeta(meta);
  } catch (error) {
    return { known: false, reason: `state store unavailable: ${errorMessage(error)}` };
  } finally {
    clearTimeout(timer);
    // Stops reconnecting, whatever state the client is in (a no-op after a clean close).
    store.redis.disconnect();
  }
}

/** The relay nodes consuming the queue, the active one (the owner) first. */
function nodesOf(consumers: QueueConsumer[]): { owner: string | null; nodes: { node: string; active: boolean }[]; others: number } {
  const byRelay = consumers.filter((consumer) => consumer.node !== undefined);
  const nodes = byRelay
    .map((consumer) => ({ node: consumer.node!, active: consumer.active }))
    .sort((a, b) => Number(b.active) - Number(a.active));
  return { owner: nodes.find((entry) => entry.active)?.node ?? null, nodes, others: consumers.length - byRelay.length };
}

function ownerLines(details: QueueDetails | undefined): string[] {
  if (!details) return [];
  if (!details.consumers) return [`owner:     unknown (${details.unacked.known ? 'no consumer details' : details.unacked.reason})`];
  const { owner, nodes, others } = nodesOf(details.consumers);
  const list = nodes.map((entry) => `${entry.node} (${entry.active ? 'active' : 'waiting'})`).join(', ');
  return [
    `owner:     ${owner ?? 'none (no relay node consumes the queue: no connection of the user, or none for STREAM_LINGER_MS)'}`,
    `nodes:     ${list || 'none'}${others > 0 ? `; ${others} consumer(s) not made by a relay` : ''}`,
  ];
}

function unackedText(unacked: UnackedCount): string {
  return unacked.known ? String(unacked.unacked) : `unknown (${unacked.reason})`;
}

function stateLines(state: StateReport): string[] {
  if (!state.known) return [`state:     unknown (${state.reason})`];
  if (!state.present) return ['state:     none (no message numbered yet, or the store lost it: the next delivery starts a new epoch)'];
  return [
    `epoch:     ${state.epoch}`,
    `seq:       ${state.seq} (last numbered)`,
    `acked:     ${state.acked} (${state.pending} numbered and not acked)`,
    `history:   ${state.history ? `seq ${state.history.from}-${state.history.to} (${state.history.count} entries)` : 'empty'}`,
  ];
}

export async function inspect(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const user = invocation.positionals[0]!;
  if (!isValidUserId(user)) throw usageError('inspect: <user> must be 1-128 characters of [A-Za-z0-9._:@-]');
  const config = loadOperatorConfig(env);
  const queue = inboxQueueName(user);
  const [queueState, state] = await Promise.all([
    withBroker(config.rabbitmqUrls, 'inspect', (session) => checkQueue(session, queue)),
    readState(config, user),
  ]);
  const details = queueState ? await queueDetails(config.managementUrl, config.vhost, queue) : undefined;
  const unacked: UnackedCount = details?.unacked ?? { known: false, reason: 'the queue does not exist' };
  const cluster = details?.consumers ? nodesOf(details.consumers) : undefined;
  const data = {
    user,
    queue: {
      name: queue,
      exists: queueState !== undefined,
      ready: queueState?.messageCount ?? null,
      consumers: queueState?.consumerCount ?? null,
      unacked: unacked.known ? unacked.unacked : null,
      unackedSource: unacked.known ? unacked.source : null,
      unackedUnknownReason: unacked.known ? null : unacked.reason,
      // The node of the active consumer, and every relay node with a consumer (null: unknown).
      owner: cluster ? cluster.owner : null,
      nodes: cluster ? cluster.nodes : null,
    },
    state,
  };
  output.result(data, () => [
    `user:      ${user}`,
    queueState
      ? `queue:     ${queue}: ${queueState.messageCount} ready, ${unackedText(unacked)} unacked, ${queueState.consumerCount} consumer(s)`
      : `queue:     ${queue} does not exist (never provisioned; the first delivery or "inbox-relay provision" creates it)`,
    ...ownerLines(details),
    ...stateLines(state),
  ]);
  return 0;
}
