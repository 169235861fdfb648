/**
 * Presence while its Redis is stopped and started again (a Redis of the test's own): the
 * writes fail and are counted, delivery goes on once the store is back, a connection that
 * stayed open stays online (its node's refresh keeps it), and one that closed during the outage
 * (its remove failed) goes offline when its entry expires, with one `offline` event.
 */
import amqp, { type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/amqp/producer.js';
import { PRESENCE_EXCHANGE } from '../../src/amqp/topology.js';
import type { PresenceEvent } from '../../src/presence/presence-tracker.js';
import { waitUntil } from '../../src/wait-until.js';
import { OwnRedis, QUICK_REDIS_BREAKER } from '../helpers/own-redis.js';
import { RawClient } from '../helpers/raw-client.js';
import { rabbitmqUrl, startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';

describe('presence across a Redis outage', () => {
  const redis = new OwnRedis();
  let relay: TestRelay;
  let producer: Producer;
  let reader: Producer;
  let connection: ChannelModel;
  const events: (PresenceEvent & { routingKey: string })[] = [];
  const stays = uid('stays');
  const leaves = uid('leaves');

  beforeAll(async () => {
    await redis.start();
    relay = await startTestRelay(
      testConfig({
        REDIS_URL: redis.url,
        ...QUICK_REDIS_BREAKER,
      }),
    );
    producer = testProducer(relay.config);
    reader = new Producer({ url: rabbitmqUrl(), redis: redis.url, redisKeyPrefix: relay.config.redisKeyPrefix });
    connection = await amqp.connect(rabbitmqUrl());
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    for (const user of [stays, leaves]) await channel.bindQueue(queue, PRESENCE_EXCHANGE, user);
    await channel.consume(
      queue,
      (message) => {
        if (message)
          events.push({ ...(JSON.parse(message.content.toString('utf8')) as PresenceEvent), routingKey: message.fields.routingKey });
      },
      { noAck: true },
    );
  });
  afterAll(async () => {
    await reader.close();
    await producer.close();
    await connection.close();
    await relay.stop();
    await redis.destroy();
  });

  const shape = (user: string) =>
    events.filter((event) => event.routingKey === user).map(({ online, connections }) => ({ online, connections }));

  it('counts failed writes, keeps delivering, and makes a failed remove good by expiry', async () => {
    const failed: string[] = [];
    relay.relay.events.on('presence-write', (request, outcome) => {
      if (outcome === 'failed') failed.push(request);
    });
    const clients: RawClient[] = [];
    for (const user of [stays, leaves]) {
      const client = await RawClient.connect(relay.url);
      clients.push(client);
      client.send({ type: 'hello', token: token(user), device: 'desk' });
      await client.next('welcome');
    }
    const [stayer, leaver] = clients as [RawClient, RawClient];
    for (const user of [stays, leaves]) {
      await waitUntil(async () => (await reader.presence(user)).online, { timeoutMs: 1_000, what: `${user} online` });
    }

    await redis.stop();
    leaver.close();
    await leaver.closed;
    await waitUntil(() => failed.includes('apply'), { timeoutMs: 10_000, what: 'the remove to fail' });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await redis.start();

    // Delivery goes on once the store's breaker lets it: presence holds nothing back.
    await producer.publish(stays, { n: 1 });
    expect(await stayer.next('msg', 30_000)).toMatchObject({ seq: 1, data: { n: 1 } });

    // The closed connection's entry outlives the outage until it expires (50 s after its put).
    const samples: boolean[] = [];
    await waitUntil(
      async () => {
        samples.push((await reader.presence(stays)).online);
        return !(await reader.presence(leaves)).online;
      },
      { timeoutMs: 70_000, intervalMs: 500, what: `${leaves} offline` },
    );
    expect(samples.every(Boolean)).toBe(true);
    expect((await reader.presence(stays)).connections).toMatchObject([{ node: relay.config.nodeId, device: 'desk' }]);
    await waitUntil(() => shape(leaves).length === 2, { timeoutMs: 5_000, what: 'the offline event' });
    expect(shape(leaves)).toEqual([
      { online: true, connections: 1 },
      { online: false, connections: 0 },
    ]);
    expect(shape(stays)).toEqual([{ online: true, connections: 1 }]);
    expect(stayer.closedWith).toBeUndefined();
    stayer.close();
  }, 120_000);
});
