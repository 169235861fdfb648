/**
 * Redis paused (CLIENT PAUSE) and Redis stopped then started: the redis breaker opens, clients
 * see `status: degraded`, new connections get 1013 with retry-after, /readyz says not ready; when
 * Redis answers again everything resumes without client action, and every confirmed message is
 * delivered in order, none lost. Runs against a Redis of its own, so nothing else is disturbed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import { parseRetryAfterMs } from '../../src/protocol/close-codes.js';
import { waitUntil } from '../../src/wait-until.js';
import { readyz } from '../helpers/admin.js';
import { OwnRedis, QUICK_REDIS_BREAKER } from '../helpers/own-redis.js';
import { RawClient } from '../helpers/raw-client.js';
import { checkSoak, untilAllProcessed } from '../helpers/soak-client.js';
import { soakUsersWithWatcher } from '../helpers/soak-users.js';
import { startTestRelay, testConfig, testProducer, type TestRelay } from '../helpers/relay.js';

const USERS = 5;
const MESSAGES = 120;

describe.each(['pause', 'stop-start'] as const)('Redis outage (%s)', (fault) => {
  const redis = new OwnRedis();
  let relay: TestRelay;
  let producer: Producer;
  const statuses: string[][] = [];
  beforeAll(async () => {
    await redis.start();
    relay = await startTestRelay(
      testConfig({
        REDIS_URL: redis.url,
        ...QUICK_REDIS_BREAKER,
        WINDOW_DEFAULT: '10',
      }),
    );
    producer = testProducer(relay.config);
  });
  afterAll(async () => {
    await producer.close();
    await relay.stop();
    await redis.destroy();
  });

  it('opens the breaker, sheds new connections, and resumes delivery in order afterwards', async () => {
    // Soak clients, and one extra connection of the first user that watches status frames.
    const { users, clients, watcher } = await soakUsersWithWatcher(relay.url, 'redis', USERS);

    const published = new Map<string, string[]>(users.map((user) => [user, []]));
    const publish = async (from: number, to: number): Promise<void> => {
      await Promise.all(
        users.map(async (user) => {
          for (let n = from; n <= to; n += 1) published.get(user)!.push((await producer.publish(user, { n })).messageId);
        }),
      );
    };
    await publish(1, MESSAGES / 2);
    await waitUntil(() => clients.every((c) => c.lastSeq >= 10), { timeoutMs: 20_000, intervalMs: 50, what: 'first deliveries' });

    if (fault === 'pause') await redis.pause(4_000);
    else await redis.stop();
    // Messages published during the outage wait in RabbitMQ.
    const during = publish(MESSAGES / 2 + 1, MESSAGES);
    const transitions: string[] = [];
    relay.relay.events.on('breaker', (name, state) => transitions.push(`${name}:${state}`));
    relay.relay.events.on('consumer-lost', (reason) => transitions.push(`lost:${reason}`));
    await waitUntil(() => relay.relay.breakers().redis === 'open', {
      timeoutMs: 15_000,
      intervalMs: 50,
      what: () => `the redis breaker to open: ${transitions.join(', ')}`,
    });
    expect(await readyz(relay.relay.adminPort)).toBe(503);
    const degraded = await watcher.next('status', 10_000);
    expect(degraded).toMatchObject({ state: 'degraded' });

    const refused = await RawClient.connect(relay.url);
    const closed = await refused.closeCode();
    expect(closed.code).toBe(1013);
    expect(parseRetryAfterMs(closed.reason)).toBeGreaterThan(0);

    if (fault === 'stop-start') {
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      await redis.start();
    }
    await during;
    await waitUntil(() => relay.relay.breakers().redis === 'closed', {
      timeoutMs: 30_000,
      intervalMs: 50,
      what: 'the redis breaker to close',
    });
    await waitUntil(async () => (await readyz(relay.relay.adminPort)) === 200, { timeoutMs: 10_000, intervalMs: 50, what: 'ready again' });
    expect(await watcher.next('status', 10_000)).toMatchObject({ state: 'ok' });

    await untilAllProcessed(clients, users, MESSAGES, 30_000, (user) => relay.relay.registry.get(user)?.snapshot());
    for (const client of clients) client.stop();
    watcher.close();
    users.forEach((user, i) => {
      const client = clients[i]!;
      expect(checkSoak(client, published.get(user)!), user).toEqual([]);
    });
    statuses.push(watcher.frames.filter((f) => f.type === 'status').map((f) => (f as { state: string }).state));
  });
});
