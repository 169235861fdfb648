/**
 * Only the operator's replay of a dead letter gets a new seq (docs/PROTOCOL.md 2.6), against the
 * real RabbitMQ, Redis and relay: a producer that sets the replay header itself, with no seal, a
 * forged one or one made with another key, gets the usual deduplication (a copy of a message the
 * user got is not delivered again), and so does a producer that copies a sealed replay;
 * `inbox-relay dlq replay`, run with REPLAY_KEY as from another host (only its environment is
 * shared with the relay), still replays, and the client gets the message again with a new seq.
 * "Not delivered" is checked by order, not by waiting: a message published after the forgery
 * must be the next one the client gets.
 */
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INBOX_EXCHANGE, inboxQueueName } from '../../src/amqp/topology.js';
import type { Producer } from '../../src/amqp/producer.js';
import { REPLAY_HEADER, REPLAY_SEAL_HEADER, ReplaySeal, type ReplayRefusal } from '../../src/delivery/replay-seal.js';
import { AmqpFixture, cli } from '../helpers/ops-cli.js';
import { RawClient } from '../helpers/raw-client.js';
import {
  TEST_REPLAY_KEY,
  rabbitmqUrl,
  startTestRelay,
  testConfig,
  testEnv,
  testProducer,
  token,
  uid,
  type TestRelay,
} from '../helpers/relay.js';

/** The operator CLI's environment: the relay's variables (REPLAY_KEY included) without JWT_SECRET. */
function opsEnv(): Record<string, string | undefined> {
  const { JWT_SECRET: _unused, ...env } = testEnv({ RABBITMQ_MANAGEMENT_URL: '' });
  return env;
}

describe('replay headers', () => {
  let relay: TestRelay;
  let producer: Producer;
  let model: ChannelModel;
  let forger: ConfirmChannel;
  let fixture: AmqpFixture;
  const refused: ReplayRefusal[] = [];
  const cleanup: string[] = [];

  beforeAll(async () => {
    relay = await startTestRelay(testConfig());
    relay.relay.events.on('replay-refused', (reason) => refused.push(reason));
    producer = testProducer(relay.config);
    model = await amqp.connect(rabbitmqUrl());
    model.on('error', () => undefined);
    forger = await model.createConfirmChannel();
    fixture = await AmqpFixture.open(rabbitmqUrl());
  });
  afterAll(async () => {
    for (const queue of cleanup) await fixture.deleteQueue(queue);
    await fixture.close();
    await model.close().catch(() => undefined);
    await producer.close();
    await relay.stop();
  });

  /** Publishes as a producer that does not use the producer library would: any headers it likes. */
  async function forge(user: string, messageId: string, body: Buffer, headers: Record<string, unknown>): Promise<void> {
    forger.publish(INBOX_EXCHANGE, user, body, { persistent: true, messageId, contentType: 'application/json', headers });
    await forger.waitForConfirms();
  }

  it('deduplicates a replay header a producer set, and still delivers an operator replay with a new seq', async () => {
    const user = uid('replay');
    cleanup.push(inboxQueueName(user));
    const client = await RawClient.connect(relay.url);
    try {
      client.send({ type: 'hello', token: token(user) });
      await client.next('welcome');
      const body = Buffer.from('{"order":"pizza"}');
      const { messageId: first } = await producer.publish(user, { order: 'pizza' });
      expect(await client.next('msg')).toMatchObject({ seq: 1, id: first, data: { order: 'pizza' } });
      client.send({ type: 'ack', seq: 1 });
      // The relay took the ack (its mark is in the store), so a copy numbered 1 is finished unsent.
      await expect.poll(async () => (await relay.relay.store.peek(user))?.acked, { timeout: 10_000 }).toBe(1);

      const wrongKey = new ReplaySeal(['another-replay-key-0123456789abcdefghij']);
      await forge(user, first, body, { [REPLAY_HEADER]: 1 });
      await forge(user, first, body, { [REPLAY_HEADER]: 2, [REPLAY_SEAL_HEADER]: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
      await forge(user, first, body, {
        [REPLAY_HEADER]: 3,
        [REPLAY_SEAL_HEADER]: wrongKey.seal({ user, messageId: first, count: 3, body }),
      });
      const { messageId: second } = await producer.publish(user, { order: 'salad' });
      // None of the forged copies came first: the next message is the one published after them.
      expect(await client.next('msg')).toMatchObject({ seq: 2, id: second, redelivered: false, data: { order: 'salad' } });
      expect(refused).toEqual(['no-seal', 'bad-seal', 'bad-seal']);

      // The client gives up on the second message; the operator replays it.
      const tap = await fixture.privateQueue(uid('replay-tap'));
      cleanup.push(tap);
      await fixture.bind(tap, 'inbox.dlx');
      client.send({ type: 'nack', seq: 2, requeue: false });
      await expect
        .poll(async () => (await fixture.drainQueue(tap)).some((m) => m.properties.messageId === second), {
          timeout: 20_000,
          interval: 250,
        })
        .toBe(true);
      // inbox.dead is shared with other tests: replay this user's messages only.
      const run = await cli(['dlq', 'replay', '--user', user, '--json'], opsEnv());
      expect(run.code, run.stderr).toBe(0);
      expect(run.json<{ replayed: unknown[] }>().replayed).toEqual([{ messageId: second, user }]);
      expect(await client.next('msg', 20_000)).toMatchObject({ seq: 3, id: second, redelivered: false, data: { order: 'salad' } });
      client.send({ type: 'ack', seq: 3 });
      await expect.poll(async () => (await relay.relay.store.peek(user))?.acked, { timeout: 10_000 }).toBe(3);

      // A producer that got hold of the sealed copy and publishes it again gets a copy of that replay: deduplicated.
      const seal = new ReplaySeal([TEST_REPLAY_KEY]);
      const salad = Buffer.from('{"order":"salad"}');
      await forge(user, second, salad, {
        [REPLAY_HEADER]: 1,
        [REPLAY_SEAL_HEADER]: seal.seal({ user, messageId: second, count: 1, body: salad }),
      });
      const { messageId: third } = await producer.publish(user, { order: 'soup' });
      expect(await client.next('msg')).toMatchObject({ seq: 4, id: third, data: { order: 'soup' } });
      expect(refused).toHaveLength(3);
      const metrics = await fetch(`http://127.0.0.1:${relay.relay.adminPort}/metrics`).then((response) => response.text());
      expect(metrics).toMatch(/inbox_relay_replay_headers_refused_total\{reason="bad-seal"\} 2/);
    } finally {
      client.close();
      await client.closed;
    }
  });
});
