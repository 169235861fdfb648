/**
 * The core guarantee under client churn: 50 users x 200 messages, clients dropping at random
 * points (mid-window, before acking) and resuming. For every user, seqs 1..200 are processed
 * gap-free in publish order; duplicates are only of seqs the client had not acked, and say so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import { SoakClient, checkSoak, untilAllProcessed } from '../helpers/soak-client.js';
import { queueCounts, startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';

const USERS = 50;
const MESSAGES = 200;

async function publishAll(producer: Producer, users: string[]): Promise<Map<string, string[]>> {
  const published = new Map<string, string[]>();
  await Promise.all(
    users.map(async (user) => {
      const ids: string[] = [];
      published.set(user, ids);
      for (let n = 1; n <= MESSAGES; n += 1) {
        const { messageId } = await producer.publish(user, { n });
        ids.push(messageId);
      }
    }),
  );
  return published;
}

// Reconnects (20-100 ms after a drop) mostly find the user's consumer still lingering; with
// STREAM_LINGER_MS=0 every drop releases the consumer and every reconnect starts a new one, so
// messages go back to the queue and come again (RabbitMQ's requeue order, single active consumer).
describe.each([
  ['quorum', '5000'],
  ['classic', '5000'],
  ['quorum', '0'],
] as const)('delivery under client churn (%s queues, STREAM_LINGER_MS=%s)', (queueType, lingerMs) => {
  let relay: TestRelay;
  let producer: Producer;
  beforeAll(async () => {
    relay = await startTestRelay(testConfig({ QUEUE_TYPE: queueType, WINDOW_DEFAULT: '10', STREAM_LINGER_MS: lingerMs }));
    producer = testProducer(relay.config);
  });
  afterAll(async () => {
    await producer.close();
    await relay.stop();
  });

  it('delivers every message of every user in order, resuming after random drops', async () => {
    const users = Array.from({ length: USERS }, (_, i) => uid(`soak${i}`));
    const clients = users.map((user) => new SoakClient({ url: relay.url, token: () => token(user), dropRate: 1 / 40, ackEvery: 4 }));
    for (const client of clients) client.start();
    const published = await publishAll(producer, users);
    await untilAllProcessed(clients, users, MESSAGES, 90_000, async (user) => ({
      stream: relay.relay.registry.get(user)?.snapshot(),
      queue: await queueCounts(user),
    }));
    for (const client of clients) client.flushAck();
    for (const client of clients) client.stop();

    let drops = 0;
    let duplicates = 0;
    users.forEach((user, i) => {
      const client = clients[i]!;
      expect(checkSoak(client, published.get(user)!), user).toEqual([]);
      // Data order: each seq carries the message published in that position.
      for (const record of client.received) expect((record.data as { n: number }).n).toBe(record.seq);
      drops += client.connections - 1;
      duplicates += client.received.length - new Set(client.received.map((r) => `${r.epoch}/${r.seq}`)).size;
    });
    // The test only proves something if clients really dropped and messages really came again.
    expect(drops).toBeGreaterThan(USERS);
    expect(duplicates).toBeGreaterThan(0);
  });
});
