/**
 * RabbitMQ closes the relay's connections (and the producer's) mid-stream, three times: consumers
 * are lost and restarted, clients see `degraded` then `ok`, and every confirmed message is
 * delivered in order, none lost. Only this test's named connections are closed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import { closeConnections } from '../helpers/rabbitmqctl.js';
import { checkSoak, untilAllProcessed } from '../helpers/soak-client.js';
import { soakUsersWithWatcher } from '../helpers/soak-users.js';
import { startTestRelay, testConfig, testProducer, uid, type TestRelay } from '../helpers/relay.js';

const USERS = 5;
const MESSAGES = 150;

describe('broker connections closed mid-stream', () => {
  const name = uid('chaos-amqp');
  let relay: TestRelay;
  let producer: Producer;
  beforeAll(async () => {
    relay = await startTestRelay(testConfig({ AMQP_CONNECTION_NAME: name, WINDOW_DEFAULT: '10', PUBLISH_TIMEOUT_MS: '3000' }));
    producer = testProducer(relay.config);
  });
  afterAll(async () => {
    await producer.close();
    await relay.stop();
  });

  it('restarts consumers and delivers every confirmed message in order', async () => {
    // Soak clients, and one extra connection of the first user that watches status frames.
    const { users, clients, watcher } = await soakUsersWithWatcher(relay.url, 'amqp', USERS);

    const published = new Map<string, string[]>(users.map((user) => [user, []]));
    let retries = 0;
    const publishing = Promise.all(
      users.map(async (user) => {
        for (let n = 1; n <= MESSAGES; n += 1) {
          const messageId = `${user}-${n}`;
          // A publish cut by a closed connection is retried with the same messageId: if the
          // first copy did arrive, the relay gives both the same seq.
          for (let attempt = 0; ; attempt += 1) {
            try {
              await producer.publish(user, { n }, { messageId });
              break;
            } catch (error) {
              if (attempt >= 30) throw error;
              retries += 1;
              await new Promise((resolve) => setTimeout(resolve, 100));
            }
          }
          published.get(user)!.push(messageId);
        }
      }),
    );
    await clients[0]!.until(() => clients[0]!.lastSeq >= 20, 30_000, 'first deliveries');
    let closed = 0;
    for (let round = 0; round < 3; round += 1) {
      closed += await closeConnections(name);
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
    expect(closed).toBeGreaterThanOrEqual(3);
    expect(await watcher.next('status', 10_000)).toMatchObject({ state: 'degraded' });
    await publishing;
    await untilAllProcessed(clients, users, MESSAGES, 60_000, (user) => relay.relay.registry.get(user)?.snapshot());
    const statuses = watcher.frames.filter((f) => f.type === 'status').map((f) => (f as { state: string }).state);
    expect(statuses.at(-1)).toBe('ok');
    for (const client of clients) client.stop();
    watcher.close();
    users.forEach((user, i) => {
      expect(checkSoak(clients[i]!, published.get(user)!), user).toEqual([]);
    });
    expect(retries).toBeGreaterThanOrEqual(0);
  });
});
