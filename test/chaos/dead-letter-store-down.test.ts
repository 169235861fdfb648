/**
 * A client asks to dead-letter a message while neither Redis nor the consumer is there to take
 * the request (Redis stopped, the relay's broker connection closed), acks past it and leaves;
 * once Redis is back it resumes past the seq. The request must survive its stream: the message
 * ends in the dead-letter exchange, is not delivered again and not acked. Before requests were
 * handed to the user's next stream on the node, the resumed position acked the message.
 * Runs against a Redis of its own; only this test's named broker connections are closed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import { tapDeadLetters, type DeadLetterTap } from '../helpers/dead-letter-tap.js';
import { OwnRedis } from '../helpers/own-redis.js';
import { closeConnections } from '../helpers/rabbitmqctl.js';
import { RawClient, msgs } from '../helpers/raw-client.js';
import { queueCounts, startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';

describe('dead-letter request while Redis and the consumer are gone', () => {
  const name = uid('chaos-dlstore');
  const redis = new OwnRedis();
  let relay: TestRelay;
  let producer: Producer;
  let tap: DeadLetterTap;
  beforeAll(async () => {
    await redis.start();
    relay = await startTestRelay(
      testConfig({
        REDIS_URL: redis.url,
        REDIS_COMMAND_TIMEOUT_MS: '300',
        AMQP_CONNECTION_NAME: name,
        WINDOW_DEFAULT: '10',
        STREAM_LINGER_MS: '0',
      }),
    );
    producer = testProducer(relay.config);
    tap = await tapDeadLetters();
  });
  afterAll(async () => {
    await tap.close();
    await producer.close();
    await relay.stop();
    await redis.destroy();
  });

  it('keeps the request past the connection: the message is dead-lettered, not acked, when the client resumes past it', async () => {
    const user = uid('dlstore');
    const client = await RawClient.connect(relay.url);
    client.send({ type: 'hello', token: token(user) });
    const { epoch } = await client.next('welcome');
    for (let n = 1; n <= 3; n += 1) await producer.publish(user, { n }, { messageId: `${user}-${n}` });
    for (let n = 1; n <= 3; n += 1) expect(await client.next('msg', 20_000)).toMatchObject({ seq: n, id: `${user}-${n}` });

    // Redis goes, then the consumer: the relay holds nothing the request could reject now.
    await redis.stop();
    expect(await closeConnections(name)).toBeGreaterThan(0);
    expect(await client.next('status', 30_000)).toMatchObject({ state: 'degraded' });
    client.send({ type: 'nack', seq: 2, requeue: false });
    client.send({ type: 'ack', seq: 3 });
    client.close();
    await client.closed;

    await redis.start();
    const resumed = await helloWhenReady(relay, user, epoch);
    expect(resumed.frames.find((frame) => frame.type === 'welcome')).toMatchObject({ resumed: true, lastSeq: 3 });

    await expect.poll(() => tap.ids.has(`${user}-2`), { timeout: 30_000, interval: 250 }).toBe(true);
    resumed.close();
    await expect.poll(() => queueCounts(user), { timeout: 30_000, interval: 250 }).toEqual({ ready: 0, consumers: 0 });
    expect(msgs(resumed.frames)).toEqual([]);
    expect([`${user}-1`, `${user}-3`].filter((id) => tap.ids.has(id))).toEqual([]);
  });
});

/** Connects and resumes until the relay welcomes (it refuses hellos with 1013 while Redis is down). */
async function helloWhenReady(relay: TestRelay, user: string, epoch: string): Promise<RawClient> {
  for (let attempt = 0; attempt < 60; attempt += 1) {
    const client = await RawClient.connect(relay.url);
    client.send({ type: 'hello', token: token(user), resume: { epoch, lastSeq: 3 } });
    try {
      await client.next('welcome', 2_000);
      return client;
    } catch {
      client.terminate();
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  throw new Error('the relay did not welcome the client within 60 attempts');
}
