/** A message published before its user's queue existed is not lost: it is delivered when the user connects. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import amqp from 'amqplib';
import { Producer } from '../../src/amqp/producer.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestRelay, testConfig, token, uid, type TestRelay } from '../helpers/relay.js';

describe('messages for users without a queue', () => {
  let relay: TestRelay;
  let producer: Producer;
  beforeAll(async () => {
    relay = await startTestRelay(testConfig());
    // No provisioning: the producer relies on the alternate exchange, as a foreign producer would.
    producer = new Producer({ url: relay.config.rabbitmqUrl });
  });
  afterAll(async () => {
    await producer.close();
    await relay.stop();
  });

  it('provisions the inbox and delivers what was published before it existed, in order', async () => {
    const user = uid('late');
    const connection = await amqp.connect(relay.config.rabbitmqUrl);
    connection.on('error', () => undefined);
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    // The queue does not exist yet (checkQueue fails and closes the channel).
    await expect(channel.checkQueue(`inbox.${user}`)).rejects.toThrow(/NOT_FOUND/);
    await connection.close();

    const ids = [];
    for (let n = 1; n <= 3; n += 1) ids.push((await producer.publish(user, { n })).messageId);
    const client = await RawClient.connect(relay.url);
    client.send({ type: 'hello', token: token(user) });
    await client.next('welcome');
    const got = [await client.next('msg', 20_000), await client.next('msg'), await client.next('msg')];
    expect(got.map((m) => [m.seq, m.id, (m.data as { n: number }).n])).toEqual([
      [1, ids[0], 1],
      [2, ids[1], 2],
      [3, ids[2], 3],
    ]);
    client.close();
  });
});
