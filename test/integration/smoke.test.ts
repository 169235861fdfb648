import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../helpers/raw-client.js';
import { startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';
import type { Producer } from '../../src/amqp/producer.js';

describe('relay smoke', () => {
  let relay: TestRelay;
  let producer: Producer;
  beforeAll(async () => {
    relay = await startTestRelay(testConfig());
    producer = testProducer(relay.config);
  });
  afterAll(async () => {
    await producer.close();
    await relay.stop();
  });

  it('delivers published messages in order and acks them', async () => {
    const user = uid('smoke');
    for (let i = 1; i <= 5; i += 1) await producer.publish(user, { n: i });
    const client = await RawClient.connect(relay.url);
    client.send({ type: 'hello', token: token(user) });
    const welcome = await client.next('welcome');
    expect(welcome.user).toBe(user);
    const got = [];
    for (let i = 1; i <= 5; i += 1) got.push(await client.next('msg'));
    expect(got.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(got.map((m) => (m.data as { n: number }).n)).toEqual([1, 2, 3, 4, 5]);
    client.send({ type: 'ack', seq: 5 });
    client.close();
    await client.closed;
  });
});
