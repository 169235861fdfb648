/**
 * Dead letters explain themselves, against the real RabbitMQ: each reason the relay dead-letters
 * for reaches the dead-letter exchange as a copy carrying `x-inbox-relay-reason`, and `inbox-relay
 * dlq list` shows it next to RabbitMQ's own reason; a copy that cannot be published leaves the
 * message to RabbitMQ's own dead-lettering (`rejected`) and loses nothing; a multiple ack never
 * covers a dead letter in flight. (The unrouted path's reasons: unrouted-mover.test.ts.)
 *
 * Every dead letter also reaches a private tap queue bound to `inbox.dlx`, and `dlq list` runs on
 * that tap (filtered by a unique user): the shared `inbox.dead` belongs to every test and relay.
 */
import amqp, { type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionPool } from '../../src/amqp/connection-pool.js';
import { DeadLetterPublisher } from '../../src/amqp/dead-letter-publisher.js';
import { createInboxConsumerFactory } from '../../src/amqp/inbox-consumer.js';
import { DEAD_LETTER_EXCHANGE, inboxQueueName, provisionInbox, type QueueSettings } from '../../src/amqp/topology.js';
import type { DeadLetterSummary } from '../../src/cli/dead-letter.js';
import type { ConsumerHandle, Delivery } from '../../src/delivery/consumer.js';
import { ErrorCode, isRelayError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { AmqpFixture, cli } from '../helpers/ops-cli.js';
import { RawClient } from '../helpers/raw-client.js';
import { rabbitmqUrl, startTestRelay, testConfig, testEnv, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';

/** The CLI's environment (operator commands need no JWT_SECRET). */
function opsEnv(): Record<string, string | undefined> {
  const { JWT_SECRET: _unused, ...env } = testEnv({ RABBITMQ_MANAGEMENT_URL: '' });
  return env;
}

interface ListOutput {
  depth: number;
  matched: number;
  listed: number;
  messages: DeadLetterSummary[];
}

describe('dead-letter reasons', () => {
  let fixture: AmqpFixture;
  let model: ChannelModel;
  let tap: string;
  const cleanup: string[] = [];

  beforeAll(async () => {
    fixture = await AmqpFixture.open(rabbitmqUrl());
    model = await amqp.connect(rabbitmqUrl());
    model.on('error', () => undefined);
    tap = await fixture.privateQueue(uid('dlr-tap'));
    cleanup.push(tap);
    await fixture.bind(tap, DEAD_LETTER_EXCHANGE);
  });
  afterAll(async () => {
    for (const queue of cleanup) await fixture.deleteQueue(queue);
    await model.close().catch(() => undefined);
    await fixture.close();
  });

  /** `dlq list --queue <tap> <args> --json`, polled until it lists `count` messages. */
  async function listed(args: string[], count = 1): Promise<ListOutput> {
    let out: ListOutput | undefined;
    await expect
      .poll(
        async () => {
          const run = await cli(['dlq', 'list', '--queue', tap, '--limit', '10000', ...args, '--json'], opsEnv());
          expect(run.code, run.stderr).toBe(0);
          out = run.json<ListOutput>();
          return out.listed;
        },
        { timeout: 20_000, interval: 300 },
      )
      .toBe(count);
    return out!;
  }

  async function publishRaw(user: string, body: Buffer | string, options: amqp.Options.Publish): Promise<void> {
    const channel = await model.createConfirmChannel();
    channel.on('error', () => undefined);
    channel.publish('inbox', user, Buffer.isBuffer(body) ? body : Buffer.from(body), { persistent: true, ...options });
    await channel.waitForConfirms();
    await channel.close();
  }

  describe('made by the relay', () => {
    let relay: TestRelay;
    beforeAll(async () => {
      // QUEUE_DELIVERY_LIMIT is also the nack limit: the third requeue-nack of a seq dead-letters it.
      relay = await startTestRelay(testConfig({ QUEUE_DELIVERY_LIMIT: '2', MAX_MESSAGE_BYTES: '64', STREAM_LINGER_MS: '0' }));
    });
    afterAll(async () => {
      await relay.stop();
    });

    /** A connected client of a fresh user (its inbox declared by the relay). */
    async function connect(prefix: string): Promise<{ user: string; client: RawClient }> {
      const user = uid(prefix);
      cleanup.push(inboxQueueName(user));
      const client = await RawClient.connect(relay.url);
      client.send({ type: 'hello', token: token(user) });
      await client.next('welcome');
      return { user, client };
    }

    async function disconnect(client: RawClient): Promise<void> {
      client.close();
      await client.closed;
    }

    it('client-nack: a nack without requeue', async () => {
      const { user, client } = await connect('dlr-nack');
      const producer = testProducer(relay.config);
      try {
        const { messageId } = await producer.publish(user, { order: 'pizza' });
        expect(await client.next('msg')).toMatchObject({ seq: 1, id: messageId });
        client.send({ type: 'nack', seq: 1, requeue: false });
        const out = await listed(['--user', user]);
        expect(out.messages[0]).toMatchObject({
          messageId,
          user,
          reason: 'client-nack',
          relayReason: 'client-nack',
          rabbitmqReason: null,
          queue: inboxQueueName(user),
          deaths: 1,
          contentType: 'application/json',
        });
        // The original was acked once the copy was confirmed: nothing waits in the inbox.
        await expect.poll(() => fixture.depth(inboxQueueName(user))).toBe(0);
        const human = await cli(['dlq', 'list', '--queue', tap, '--user', user, '--limit', '10000'], opsEnv());
        expect(human.stdout).toMatch(
          new RegExp(`id=${messageId} user=${user} relay-reason=client-nack rabbitmq-reason=- queue=inbox\\.${user}`),
        );
      } finally {
        await producer.close();
        await disconnect(client);
      }
    });

    it('nack-limit: one requeue-nack past the limit', async () => {
      const { user, client } = await connect('dlr-limit');
      const producer = testProducer(relay.config);
      try {
        const { messageId } = await producer.publish(user, { n: 1 });
        for (let round = 0; round < 3; round += 1) {
          expect(await client.next('msg')).toMatchObject({ seq: 1, id: messageId });
          client.send({ type: 'nack', seq: 1, requeue: true });
        }
        expect(await client.next('error')).toMatchObject({ code: 'RELAY_ERR_NACK_LIMIT', seq: 1 });
        const out = await listed(['--user', user]);
        expect(out.messages[0]).toMatchObject({ messageId, relayReason: 'nack-limit', rabbitmqReason: null });
      } finally {
        await producer.close();
        await disconnect(client);
      }
    });

    it('invalid-message: no messageId, and a body that is not JSON under a JSON content type', async () => {
      const { user, client } = await connect('dlr-invalid');
      try {
        await publishRaw(user, '{"no":"id"}', { contentType: 'application/json' });
        await publishRaw(user, '{oops', { messageId: 'bad-json', contentType: 'application/json', headers: { 'x-app': 'kept' } });
        const out = await listed(['--user', user], 2);
        expect(out.messages.map((m) => [m.messageId, m.relayReason, m.rabbitmqReason])).toEqual([
          [null, 'invalid-message', null],
          ['bad-json', 'invalid-message', null],
        ]);
        const reasons = await listed(['--user', user, '--reason', 'invalid-message'], 2);
        expect(reasons.matched).toBe(2);
      } finally {
        await disconnect(client);
      }
    });

    it('too-large: a body over MAX_MESSAGE_BYTES, kept whole in the copy', async () => {
      const { user, client } = await connect('dlr-large');
      const body = JSON.stringify({ text: 'x'.repeat(100) });
      try {
        await publishRaw(user, body, { messageId: 'big-1', contentType: 'application/json', correlationId: 'corr-1' });
        const out = await listed(['--user', user, '--bodies']);
        expect(out.messages[0]).toMatchObject({ messageId: 'big-1', relayReason: 'too-large', bytes: body.length, body: JSON.parse(body) });
        const [copy] = (await fixture.drainQueue(tap)).filter((m) => m.properties.messageId === 'big-1');
        expect(copy?.content.toString()).toBe(body);
        expect(copy?.properties).toMatchObject({ correlationId: 'corr-1', contentType: 'application/json', deliveryMode: 2 });
        expect(copy?.properties.headers).toMatchObject({ 'x-inbox-relay-reason': 'too-large', 'x-inbox-relay-user': user });
      } finally {
        await disconnect(client);
      }
    });

    it("delivery_limit: RabbitMQ's own dead letter shows its reason and no relay reason", async () => {
      const user = uid('dlr-delivery');
      cleanup.push(inboxQueueName(user));
      const producer = testProducer(relay.config);
      try {
        const { messageId } = await producer.publish(user, { n: 1 });
        // Each connection takes the message and leaves without acking: it goes back, counted,
        // until the quorum queue's x-delivery-limit (2) dead-letters it.
        for (let round = 0; round < 6; round += 1) {
          const client = await RawClient.connect(relay.url);
          client.send({ type: 'hello', token: token(user) });
          await client.next('welcome');
          const got = await client.next('msg', 3_000).catch(() => undefined);
          await disconnect(client);
          if (!got) break;
        }
        const out = await listed(['--user', user]);
        expect(out.messages[0]).toMatchObject({ messageId, rabbitmqReason: 'delivery_limit', relayReason: null, reason: 'delivery_limit' });
        expect((await listed(['--user', user, '--reason', 'delivery_limit'])).matched).toBe(1);
        expect((await listed(['--user', user, '--reason', 'client-nack'], 0)).matched).toBe(0);
      } finally {
        await producer.close();
      }
    });
  });

  describe('the inbox consumer', () => {
    const SETTINGS: QueueSettings = { queueType: 'quorum', queueMaxLength: 100, queueDeliveryLimit: 20 };
    let pool: ConnectionPool;
    beforeAll(() => {
      pool = new ConnectionPool({
        url: rabbitmqUrl(),
        name: 'dead-letter reasons test',
        channelsPerConnection: 16,
        logger: silentLogger(),
      });
    });
    afterAll(async () => {
      await pool.close();
    });

    /** A consumer of a fresh user's inbox holding `count` deliveries, each copy published through `publish`. */
    async function consumerHolding(
      count: number,
      publish: Parameters<typeof createInboxConsumerFactory>[4]['publish'],
    ): Promise<{ user: string; handle: ConsumerHandle; deliveries: Delivery[]; lost: string[] }> {
      const user = uid('dlr-consumer');
      cleanup.push(inboxQueueName(user));
      await provisionInbox(() => pool.openChannel(), user, SETTINGS);
      for (let n = 1; n <= count; n += 1) await publishRaw(user, JSON.stringify({ n }), { messageId: `${user}-${n}` });
      const deliveries: Delivery[] = [];
      const lost: string[] = [];
      const factory = createInboxConsumerFactory(pool, SETTINGS, silentLogger(), 'test-node', { publish });
      const handle = await factory(user, count, {
        onDelivery: (delivery) => deliveries.push(delivery),
        onLost: (reason) => lost.push(reason),
      });
      await expect.poll(() => deliveries.length).toBe(count);
      return { user, handle, deliveries, lost };
    }

    it('loses nothing when the copy fails: the original is rejected and RabbitMQ dead-letters it (rejected)', async () => {
      let fail: ((error: Error) => void) | undefined;
      const { user, handle, deliveries, lost } = await consumerHolding(3, () => new Promise<void>((_resolve, reject) => (fail = reject)));
      const [first, , third] = deliveries;
      handle.reject(first!.tag, false, 'client-nack');
      // A cumulative ack past the dead letter in flight: it must not settle the dead letter.
      handle.ack(third!.tag, true);
      await expect.poll(() => fail !== undefined).toBe(true);
      fail!(new Error('copy refused'));
      await handle.sync();
      const out = await listed(['--user', user]);
      expect(out.messages[0]).toMatchObject({ messageId: `${user}-1`, rabbitmqReason: 'rejected', relayReason: null, reason: 'rejected' });
      // The other two were acked, the dead letter was not lost, and the channel never failed.
      await expect.poll(() => fixture.depth(inboxQueueName(user))).toBe(0);
      await handle.close();
      expect(await fixture.depth(inboxQueueName(user))).toBe(0);
      expect(lost).toEqual([]);
    });

    it('leaves the original to RabbitMQ when the channel closes before the copy is confirmed: a duplicate at worst, never a loss', async () => {
      const publisher = new DeadLetterPublisher({ pool, timeoutMs: 10_000 });
      let release: (() => void) | undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const { user, handle, deliveries, lost } = await consumerHolding(3, async (message, label) => {
        await gate;
        await publisher.publish(message, label);
      });
      try {
        const [first, , third] = deliveries;
        handle.reject(first!.tag, false, 'client-nack');
        handle.ack(third!.tag, true);
        await handle.close().catch(() => undefined);
        // close() waited for nothing it could not: the copy is still gated, so the channel closed
        // with the dead letter unsettled, and RabbitMQ has the original back.
        await expect.poll(() => fixture.depth(inboxQueueName(user))).toBe(1);
        release!();
        await expect
          .poll(async () => (await fixture.drainQueue(inboxQueueName(user))).map((m) => m.properties.messageId))
          .toEqual([`${user}-1`]);
        expect(lost).toEqual([]);
      } finally {
        release?.();
        await publisher.close();
      }
    });

    it('settles a dead letter with its reason and the multiple ack around it on a live channel', async () => {
      const publisher = new DeadLetterPublisher({ pool, timeoutMs: 10_000 });
      let release: (() => void) | undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const { user, handle, deliveries, lost } = await consumerHolding(4, async (message, label) => {
        await gate;
        await publisher.publish(message, label);
      });
      try {
        const [, second, , fourth] = deliveries;
        handle.reject(second!.tag, false, 'nack-limit');
        handle.ack(fourth!.tag, true);
        release!();
        await handle.sync();
        const out = await listed(['--user', user]);
        expect(out.messages[0]).toMatchObject({ messageId: `${user}-2`, relayReason: 'nack-limit', rabbitmqReason: null });
        await handle.close();
        expect(await fixture.depth(inboxQueueName(user))).toBe(0);
        expect(lost).toEqual([]);
      } finally {
        await publisher.close();
      }
    });

    it('counts a copy that no queue takes (mandatory, returned) as refused, not as confirmed', async () => {
      const nowhere = uid('dlr-nowhere');
      const channel = await model.createChannel();
      await channel.assertExchange(nowhere, 'fanout', { durable: false, autoDelete: false });
      const publisher = new DeadLetterPublisher({ pool, timeoutMs: 10_000, exchange: nowhere });
      try {
        const properties = { messageId: 'm-returned', headers: {} } as unknown as amqp.MessageProperties;
        const error = await publisher
          .publish({ content: Buffer.from('{}'), properties }, { reason: 'client-nack', queue: 'inbox.x', user: 'x', at: Date.now() })
          .then(
            () => undefined,
            (failure: unknown) => failure,
          );
        expect(isRelayError(error, ErrorCode.publishNacked), String(error)).toBe(true);
        expect(String(error)).toMatch(/no queue is bound/);
      } finally {
        await publisher.close();
        await channel.deleteExchange(nowhere).catch(() => undefined);
        await channel.close();
      }
    });
  });

  describe('dlq list', () => {
    it("filters by user and by either reason, and shows the relay's reason next to RabbitMQ's", async () => {
      const queue = await fixture.privateQueue(uid('dlr-list'));
      cleanup.push(queue);
      const [alice, bob] = [uid('alice'), uid('bob')];
      const relayCopy = (user: string, reason: string) => ({
        'x-inbox-relay-reason': reason,
        'x-inbox-relay-user': user,
        'x-inbox-relay-queue': `inbox.${user}`,
        'x-inbox-relay-dead-lettered-at': 1_700_000_000_000,
      });
      await fixture.put(queue, '{}', { messageId: 'a-1', headers: relayCopy(alice, 'client-nack') });
      await fixture.put(queue, '{}', { messageId: 'b-1', headers: relayCopy(bob, 'too-large') });
      await fixture.put(queue, '{}', {
        messageId: 'a-2',
        headers: {
          'x-death': [{ count: 2, reason: 'delivery_limit', queue: `inbox.${alice}`, exchange: 'inbox', 'routing-keys': [alice] }],
        },
      });
      const list = async (...args: string[]) => {
        const run = await cli(['dlq', 'list', '--queue', queue, ...args, '--json'], opsEnv());
        expect(run.code, run.stderr).toBe(0);
        return run.json<ListOutput & { filter: Record<string, string> }>();
      };
      const byAlice = await list('--user', alice);
      expect(byAlice).toMatchObject({ depth: 3, matched: 2, listed: 2, filter: { user: alice } });
      expect(byAlice.messages.map((m) => [m.position, m.messageId, m.relayReason, m.rabbitmqReason])).toEqual([
        [1, 'a-1', 'client-nack', null],
        [3, 'a-2', null, 'delivery_limit'],
      ]);
      expect((await list('--reason', 'too-large')).messages.map((m) => m.messageId)).toEqual(['b-1']);
      expect((await list('--reason', 'delivery_limit')).messages.map((m) => m.messageId)).toEqual(['a-2']);
      expect((await list('--user', bob, '--reason', 'client-nack')).matched).toBe(0);
      const limited = await list('--user', alice, '--limit', '1');
      expect([limited.matched, limited.listed]).toEqual([2, 1]);
      const human = await cli(['dlq', 'list', '--queue', queue, '--user', alice], opsEnv());
      expect(human.stdout.split('\n')[0]).toBe(`${queue}: 3 ready message(s), 2 with user=${alice}; showing 2`);
      expect(human.stdout).toContain(`#3 id=a-2 user=${alice} relay-reason=- rabbitmq-reason=delivery_limit queue=inbox.${alice} deaths=2`);
      // Listing took nothing away, and left the order as it was.
      expect((await fixture.drainQueue(queue)).map((m) => m.properties.messageId)).toEqual(['a-1', 'b-1', 'a-2']);
    });

    it('refuses a --user or --reason that cannot match, before touching the broker', async () => {
      const env = { ...opsEnv(), RABBITMQ_URL: 'amqp://127.0.0.1:1' };
      for (const args of [
        ['--user', 'not a user'],
        ['--reason', 'x;y'],
      ]) {
        const run = await cli(['dlq', 'list', ...args], env);
        expect(run.code, args.join(' ')).toBe(2);
      }
    });

    it('escapes control characters from ids, headers and bodies in human output', async () => {
      const queue = await fixture.privateQueue(uid('dlr-escape'));
      cleanup.push(queue);
      const user = uid('esc');
      const hostile = 'evil\u001b[2J\u001b]0;owned\u0007\n#9 id=forged user=root\u009b31m\u202e';
      await fixture.put(queue, JSON.stringify({ text: hostile }), {
        messageId: hostile,
        contentType: 'application/json\r\nX: 1',
        headers: {
          'x-inbox-relay-reason': `client-nack\u001b[31m`,
          'x-inbox-relay-user': user,
          'x-inbox-relay-queue': `inbox.${user}\n`,
        },
      });
      // Any control character but the line feeds between lines (matching them is the point here).
      // eslint-disable-next-line no-control-regex
      const controls = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/;
      const run = await cli(['dlq', 'list', '--queue', queue, '--bodies'], opsEnv());
      expect(run.code, run.stderr).toBe(0);
      // Nothing a terminal acts on reaches it, and no line is forged: a header line and one message line.
      expect(run.stdout).not.toMatch(controls);
      const lines = run.stdout.trimEnd().split('\n');
      expect(lines).toHaveLength(2);
      expect(lines[1]).toContain('id=evil\\x1b[2J\\x1b]0;owned\\x07\\x0a#9 id=forged user=root\\x9b31m\\u{202e}');
      expect(lines[1]).toContain('relay-reason=client-nack\\x1b[31m');
      expect(lines[1]).toContain('type=application/json\\x0d\\x0aX: 1');
      const json = await cli(['dlq', 'list', '--queue', queue, '--bodies', '--json'], opsEnv());
      expect(json.stdout).not.toMatch(controls);
      // Not a JSON content type (the CR LF makes it another type), so the body is base64.
      const body = Buffer.from(JSON.stringify({ text: hostile })).toString('base64');
      expect(json.json<ListOutput>().messages[0]).toMatchObject({ messageId: hostile, body, bodyEncoding: 'base64' });
    });
  });
});
