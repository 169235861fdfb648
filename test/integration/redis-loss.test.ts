/**
 * The state store loses everything mid-stream (FLUSHDB on a database only this test uses):
 * clients get `reset` with a new epoch, no seq is ever reused for a different message, and no
 * message RabbitMQ held is lost.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import { SoakClient } from '../helpers/soak-client.js';
import { redisUrl, startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';

const USERS = 10;
const MESSAGES = 150;
const DB = 5;

describe('state store lost mid-stream', () => {
  let relay: TestRelay;
  let producer: Producer;
  let redis: Redis;
  beforeAll(async () => {
    relay = await startTestRelay(testConfig({ REDIS_URL: redisUrl(DB), WINDOW_DEFAULT: '10' }));
    producer = testProducer(relay.config);
    redis = new Redis(redisUrl(DB));
  });
  afterAll(async () => {
    await producer.close();
    await relay.stop();
    redis.disconnect();
  });

  it('resets clients to a new epoch without reusing a seq or losing a message', async () => {
    const users = Array.from({ length: USERS }, (_, i) => uid(`flush${i}`));
    const clients = users.map((user) => new SoakClient({ url: relay.url, token: () => token(user), ackEvery: 3 }));
    for (const client of clients) client.start();
    const published = new Map<string, string[]>(users.map((user) => [user, []]));
    let flushed = false;
    let markFlushed: () => void = () => undefined;
    const flush = new Promise<void>((resolve) => {
      markFlushed = resolve;
    });
    await Promise.all(
      users.map(async (user, index) => {
        for (let n = 1; n <= MESSAGES; n += 1) {
          published.get(user)!.push((await producer.publish(user, { n })).messageId);
          if (n !== MESSAGES / 3) continue;
          if (index === 0) {
            // Let the first third be delivered and partly acked, then lose the store.
            await Promise.all(clients.map((client) => client.until(() => client.lastSeq >= MESSAGES / 4, 30_000, 'first deliveries')));
            await redis.flushdb();
            flushed = true;
            markFlushed();
          }
          // Every user publishes the rest after the loss, so every stream meets it mid-stream.
          await flush;
        }
      }),
    );
    expect(flushed).toBe(true);
    await Promise.all(
      clients.map((client, i) =>
        client.until(
          () => new Set(client.processed.map((r) => r.id)).size >= MESSAGES && client.resets.length > 0,
          60_000,
          `all messages of ${users[i]}`,
        ),
      ),
    );
    for (const client of clients) client.stop();

    users.forEach((user, i) => {
      const client = clients[i]!;
      const ids = published.get(user)!;
      // Every client was told, and moved to a new epoch.
      expect(client.resets.length, user).toBeGreaterThan(0);
      const epochs = [...new Set(client.received.map((r) => r.epoch))];
      expect(epochs.length, user).toBeGreaterThan(1);
      // No seq stands for two different messages within an epoch.
      const bySeq = new Map<string, string>();
      for (const record of client.received) {
        const key = `${record.epoch}/${record.seq}`;
        expect(bySeq.get(key) ?? record.id, key).toBe(record.id);
        bySeq.set(key, record.id);
      }
      // Nothing lost: every published message was processed at least once.
      const processed = new Set(client.processed.map((r) => r.id));
      expect(
        ids.filter((id) => !processed.has(id)),
        user,
      ).toEqual([]);
      // Within each epoch, processing follows publish order.
      for (const epoch of epochs) {
        const order = client.processed.filter((r) => r.epoch === epoch).map((r) => ids.indexOf(r.id));
        const firsts = order.filter((position, k) => order.indexOf(position) === k);
        expect(firsts, `${user} ${epoch}`).toEqual([...firsts].sort((a, b) => a - b));
      }
      expect(client.violations, user).toEqual([]);
    });
  });
});
