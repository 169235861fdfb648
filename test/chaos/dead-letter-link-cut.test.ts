/**
 * A client asks to dead-letter a message (`nack` with `requeue:false`) and acks past it, around
 * the moment RabbitMQ closes the relay's connections. Whether the nack arrives while the consumer
 * still holds the message or after the relay lost it, the message must end in the dead-letter
 * exchange, and the acked ones must leave the queue. Before dead-letter requests were kept until
 * RabbitMQ took the message, the cumulative ack cleared the request and the redelivered message
 * was acked instead. Only this test's named connections are closed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import { tapDeadLetters, type DeadLetterTap } from '../helpers/dead-letter-tap.js';
import { closeConnections } from '../helpers/rabbitmqctl.js';
import { RawClient } from '../helpers/raw-client.js';
import { queueCounts, startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';

/** Users that nack at once (consumer alive), and users that nack once told the consumer was lost. */
const EARLY = 3;
const LATE = 3;

describe('dead-letter request around a lost broker connection', () => {
  const name = uid('chaos-dl');
  let relay: TestRelay;
  let producer: Producer;
  let tap: DeadLetterTap;
  beforeAll(async () => {
    relay = await startTestRelay(testConfig({ AMQP_CONNECTION_NAME: name, WINDOW_DEFAULT: '10', STREAM_LINGER_MS: '0' }));
    producer = testProducer(relay.config);
    tap = await tapDeadLetters();
  });
  afterAll(async () => {
    await tap.close();
    await producer.close();
    await relay.stop();
  });

  it('dead-letters the nacked message and acks the others, whichever way the race goes', async () => {
    const users = Array.from({ length: EARLY + LATE }, (_, i) => uid(`dlcut${i}`));
    const clients = await Promise.all(users.map(() => RawClient.connect(relay.url)));
    await Promise.all(
      users.map(async (user, i) => {
        const client = clients[i]!;
        client.send({ type: 'hello', token: token(user) });
        await client.next('welcome');
        for (let n = 1; n <= 3; n += 1) await producer.publish(user, { n }, { messageId: `${user}-${n}` });
        for (let n = 1; n <= 3; n += 1) expect(await client.next('msg', 20_000)).toMatchObject({ seq: n, id: `${user}-${n}` });
      }),
    );
    const nackAndAck = (client: RawClient) => {
      client.send({ type: 'nack', seq: 1, requeue: false });
      client.send({ type: 'ack', seq: 3 });
    };
    const closing = closeConnections(name);
    clients.slice(0, EARLY).forEach(nackAndAck);
    await Promise.all(
      clients.slice(EARLY).map(async (client) => {
        expect(await client.next('status', 30_000)).toMatchObject({ state: 'degraded' });
        nackAndAck(client);
      }),
    );
    expect(await closing).toBeGreaterThan(0);

    await expect.poll(() => users.filter((user) => !tap.ids.has(`${user}-1`)), { timeout: 30_000, interval: 250 }).toEqual([]);
    // Messages 2 and 3 were acked, not dead-lettered: once the clients leave and the consumers
    // are released (anything unacked would go back to the queue then), every queue is empty.
    for (const client of clients) client.close();
    await expect
      .poll(async () => Promise.all(users.map((user) => queueCounts(user))), { timeout: 30_000, interval: 250 })
      .toEqual(users.map(() => ({ ready: 0, consumers: 0 })));
    expect(users.flatMap((user) => [`${user}-2`, `${user}-3`]).filter((id) => tap.ids.has(id))).toEqual([]);
  });
});
