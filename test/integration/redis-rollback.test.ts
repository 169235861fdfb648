/**
 * The state store goes back in time mid-stream: a Redis of the test's own is SIGKILLed and
 * restarted from a copy of its append-only files taken seconds earlier (what a power loss with
 * `appendfsync everysec`, or a failover to a lagging replica, does). Its meta still names the
 * same epoch, with a lower seq and acked mark. Clients must be reset to a new epoch, and every
 * message published must still reach them: none may be acked to RabbitMQ unsent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import { OwnRedis } from '../helpers/own-redis.js';
import { SoakClient } from '../helpers/soak-client.js';
import { startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';

const USERS = 20;
/** Published per user before the copy, between the copy and the rollback, and after it. */
const PER_PHASE = 20;

describe('state store restarted from older files mid-stream', () => {
  const redis = new OwnRedis();
  let relay: TestRelay;
  let producer: Producer;
  beforeAll(async () => {
    await redis.start({ fsyncAlways: true });
    // Acked marks go to the store at once, so the store is as far ahead as it can be.
    relay = await startTestRelay(testConfig({ REDIS_URL: redis.url, WINDOW_DEFAULT: '10', STORE_ACK_INTERVAL_MS: '0' }));
    producer = testProducer(relay.config);
  });
  afterAll(async () => {
    await producer.close();
    await relay.stop();
    await redis.destroy();
  });

  it('resets clients to a new epoch and loses nothing', async () => {
    const users = Array.from({ length: USERS }, (_, i) => uid(`rollback${i}`));
    const clients = users.map((user) => new SoakClient({ url: relay.url, token: () => token(user), ackEvery: 1 }));
    for (const client of clients) client.start();
    const published = new Map<string, string[]>(users.map((user) => [user, []]));
    const publishPhase = () =>
      Promise.all(
        users.map(async (user) => {
          for (let n = 0; n < PER_PHASE; n += 1) published.get(user)!.push((await producer.publish(user, { n })).messageId);
        }),
      );
    const allProcessed = (count: number, what: string) =>
      Promise.all(
        clients.map((client, i) =>
          client.until(
            () => new Set(client.processed.map((r) => r.id)).size >= count && client.ackedSeq >= client.lastSeq,
            60_000,
            `${what} of ${users[i]}`,
          ),
        ),
      );

    await publishPhase();
    await allProcessed(PER_PHASE, 'first phase');
    const older = redis.copyFiles();
    await publishPhase();
    await allProcessed(2 * PER_PHASE, 'second phase');
    // The store now holds seqs 1..40 acked; it goes back to 1..20.
    await redis.killAndRestoreFiles(older);
    await redis.start({ fsyncAlways: true });
    await publishPhase();
    await Promise.all(
      clients.map((client, i) =>
        client.until(() => new Set(client.processed.map((r) => r.id)).size >= 3 * PER_PHASE, 60_000, `all messages of ${users[i]}`),
      ),
    );
    for (const client of clients) client.stop();

    users.forEach((user, i) => {
      const client = clients[i]!;
      const ids = published.get(user)!;
      const processed = new Set(client.processed.map((r) => r.id));
      // Before the fix, the third phase was numbered 21..40 again and acked without being sent.
      expect(
        ids.filter((id) => !processed.has(id)),
        user,
      ).toEqual([]);
      expect(client.resets.length, user).toBeGreaterThan(0);
      // No seq stands for two different messages within an epoch.
      const bySeq = new Map<string, string>();
      for (const record of client.received) {
        const key = `${record.epoch}/${record.seq}`;
        expect(bySeq.get(key) ?? record.id, key).toBe(record.id);
        bySeq.set(key, record.id);
      }
      expect(client.violations, user).toEqual([]);
    });
  });
});
