/**
 * The local 3-node RabbitMQ cluster (scripts/rabbitmq-cluster.sh) does what the cluster tests rely
 * on: three running nodes, quorum queues replicated on all three, a new leader after the leader's
 * node is SIGKILLed with every confirmed message still there in order, and the node back in the
 * cluster after a restart. Plain amqplib: the relay's own broker-list support is tested elsewhere.
 */
import { performance } from 'node:perf_hooks';
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { afterAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../src/wait-until.js';
import {
  amqpUrl,
  clusterRabbitmqUrls,
  NODE_NUMBERS,
  nodeName,
  nodeNumber,
  rabbitCluster,
  type NodeNumber,
} from '../helpers/local-cluster.js';
import { uid } from '../helpers/relay.js';

const MESSAGES = 500;
const allNodes = NODE_NUMBERS.map(nodeName).sort();
const connections: ChannelModel[] = [];

async function connect(n: NodeNumber): Promise<ChannelModel> {
  const connection = await amqp.connect(amqpUrl(n));
  // A killed node's connections fail; that is the point of the test, not an error of it.
  connection.on('error', () => undefined);
  connections.push(connection);
  return connection;
}

async function confirmChannel(n: NodeNumber): Promise<ConfirmChannel> {
  const channel = await (await connect(n)).createConfirmChannel();
  channel.on('error', () => undefined);
  return channel;
}

/** Publishes `body` persistently and resolves once the broker confirmed it. */
function publishConfirmed(channel: ConfirmChannel, queue: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    channel.sendToQueue(queue, Buffer.from(body), { persistent: true, messageId: body }, (error) =>
      error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(),
    );
  });
}

afterAll(async () => {
  for (const connection of connections) await connection.close().catch(() => undefined);
});

describe('local RabbitMQ cluster', () => {
  it('runs three nodes, each of which sees all three running, at the URLs the setup gives', async () => {
    for (const n of NODE_NUMBERS) expect(await rabbitCluster.runningNodes(n), nodeName(n)).toEqual(allNodes);
    expect(clusterRabbitmqUrls().split(',')).toEqual(NODE_NUMBERS.map(amqpUrl));
  });

  it('keeps a quorum queue through the SIGKILL of its leader, and the node rejoins', async () => {
    const queue = uid('cluster-qq');
    // The leader lands on the node the declaring client is connected to (client-local).
    const declaring = await confirmChannel(1);
    await declaring.assertQueue(queue, {
      durable: true,
      arguments: { 'x-queue-type': 'quorum', 'x-quorum-initial-group-size': 3 },
    });
    const declared = await rabbitCluster.queue(queue, 1);
    expect(declared?.type).toBe('quorum');
    expect([...declared!.members].sort()).toEqual(allNodes);
    expect([...declared!.online].sort()).toEqual(allNodes);
    const killed = nodeNumber(declared!.leader);
    const survivor = NODE_NUMBERS.find((n) => n !== killed)!;

    // Published through a survivor, so the publisher's own connection outlives the kill.
    const publisher = await confirmChannel(survivor);
    for (let i = 0; i < MESSAGES; i += 1) publisher.sendToQueue(queue, Buffer.from(String(i)), { persistent: true, messageId: String(i) });
    await publisher.waitForConfirms();

    const killedAt = performance.now();
    await rabbitCluster.kill(killed);
    // One more publish, right away: confirmed once a new leader has it.
    const writable = publishConfirmed(publisher, queue, String(MESSAGES)).then(() => performance.now() - killedAt);
    let electedMs = 0;
    await waitUntil(
      async () => {
        const info = await rabbitCluster.queue(queue, survivor);
        const elected = info !== undefined && info.leader !== '' && info.leader !== nodeName(killed);
        if (elected) electedMs = performance.now() - killedAt;
        return elected;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: `a new leader of ${queue} after ${nodeName(killed)} was killed` },
    );
    const writableMs = await writable;

    // Every confirmed message, in publish order, from a survivor; nothing twice.
    const consumer = await (await connect(survivor)).createChannel();
    await consumer.prefetch(100);
    const received: string[] = [];
    const redelivered: string[] = [];
    await consumer.consume(queue, (message: ConsumeMessage | null) => {
      if (!message) return;
      received.push(message.content.toString());
      if (message.fields.redelivered) redelivered.push(message.content.toString());
      consumer.ack(message);
    });
    await waitUntil(() => received.length >= MESSAGES + 1, {
      timeoutMs: 60_000,
      what: () => `${MESSAGES + 1} messages (got ${received.length})`,
    });
    expect(received).toEqual(Array.from({ length: MESSAGES + 1 }, (_, i) => String(i)));
    expect(redelivered).toEqual([]);

    const restartedAt = performance.now();
    await rabbitCluster.start(killed);
    for (const n of NODE_NUMBERS) expect(await rabbitCluster.runningNodes(n), nodeName(n)).toEqual(allNodes);
    await waitUntil(async () => (await rabbitCluster.queue(queue, killed))?.online.length === 3, {
      timeoutMs: 60_000,
      intervalMs: 500,
      what: `the restarted ${nodeName(killed)}'s member of ${queue} back online`,
    });
    const rejoinedMs = performance.now() - restartedAt;
    const leaders = await rabbitCluster.leaderCounts(killed, new RegExp(`^${queue}$`));
    expect([...leaders.values()].reduce((sum, count) => sum + count, 0)).toBe(1);
    console.log(
      `[cluster] quorum queue leader ${nodeName(killed)} SIGKILLed: new leader reported after ${(electedMs / 1000).toFixed(1)} s ` +
        `(polled through rabbitmqctl, ~1 s a call), first publish confirmed after ${(writableMs / 1000).toFixed(1)} s; ` +
        `${MESSAGES + 1} of ${MESSAGES + 1} messages consumed in order; node restarted and its member online after ${(rejoinedMs / 1000).toFixed(1)} s`,
    );
    await consumer.deleteQueue(queue);
  });
});
