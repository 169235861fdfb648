/**
 * The unrouted mover against the real RabbitMQ (docs/PROTOCOL.md 2.4): a message whose inbox is
 * full is dead-lettered with its reason and the message behind it, for another user, is still
 * moved and delivered; inboxes are declared no faster than the cap, the mover says when it waits
 * for it, and every message arrives in the end; a mover stopped while it waits loses nothing.
 *
 * Each mover here moves from a queue of its own, shaped like `inbox.unrouted`: the shared one has
 * a single active consumer, which may be any relay running against the same broker.
 */
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionPool } from '../../src/amqp/connection-pool.js';
import { DeadLetterPublisher } from '../../src/amqp/dead-letter-publisher.js';
import { Producer } from '../../src/amqp/producer.js';
import {
  DEAD_LETTER_EXCHANGE,
  DEAD_LETTER_REASON_HEADER,
  DEAD_LETTER_USER_HEADER,
  inboxQueueName,
  provisionInbox,
  type QueueSettings,
} from '../../src/amqp/topology.js';
import { INBOX_FULL_REASON, UnroutedMover, type UnroutedMoverOptions } from '../../src/amqp/unrouted-mover.js';
import { deadLetterUser } from '../../src/cli/dead-letter.js';
import { RECEIPT_HEADER, type ReceiptRequest } from '../../src/delivery/delivery-receipt.js';
import { silentLogger } from '../../src/log.js';
import { AmqpFixture, cli } from '../helpers/ops-cli.js';
import { RawClient } from '../helpers/raw-client.js';
import { rabbitmqUrl, startTestRelay, testConfig, testEnv, token, uid, type TestRelay } from '../helpers/relay.js';

const MAX_LENGTH = 2;
const SETTINGS: QueueSettings = { queueType: 'quorum', queueMaxLength: MAX_LENGTH, queueDeliveryLimit: 20 };

describe('unrouted mover', () => {
  let model: ChannelModel;
  let fixture: AmqpFixture;
  let pool: ConnectionPool;
  let producer: Producer;
  let deadLetters: DeadLetterPublisher;
  const movers: UnroutedMover[] = [];
  const cleanup: { queues: string[]; exchanges: string[] } = { queues: [], exchanges: [] };

  beforeAll(async () => {
    model = await amqp.connect(rabbitmqUrl());
    model.on('error', () => undefined);
    fixture = await AmqpFixture.open(rabbitmqUrl());
    pool = new ConnectionPool({ url: rabbitmqUrl(), name: 'unrouted-mover test', channelsPerConnection: 16, logger: silentLogger() });
    producer = new Producer({ url: rabbitmqUrl(), pool });
    deadLetters = new DeadLetterPublisher({ pool, timeoutMs: 10_000 });
  });
  afterAll(async () => {
    for (const mover of movers) await mover.stop();
    await producer.close();
    await deadLetters.close();
    await pool.close();
    for (const queue of cleanup.queues) await fixture.deleteQueue(queue);
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    for (const exchange of cleanup.exchanges) await channel.deleteExchange(exchange).catch(() => undefined);
    await model.close().catch(() => undefined);
    await fixture.close();
  });

  /** A queue shaped like inbox.unrouted behind a fanout exchange of its own: publish with routing key = user. */
  async function unroutedSource(): Promise<string> {
    const name = uid('mover-unrouted');
    const channel = await model.createChannel();
    await channel.assertExchange(name, 'fanout', { durable: false });
    await channel.assertQueue(name, {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-single-active-consumer': true,
        'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE,
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      },
    });
    await channel.bindQueue(name, name, '');
    await channel.close();
    cleanup.queues.push(name);
    cleanup.exchanges.push(name);
    return name;
  }

  async function publishUnrouted(
    source: string,
    user: string,
    messageId: string,
    body: unknown,
    headers: Record<string, unknown> = {},
  ): Promise<void> {
    const channel = await model.createConfirmChannel();
    channel.publish(source, user, Buffer.from(JSON.stringify(body)), {
      persistent: true,
      messageId,
      contentType: 'application/json',
      headers,
    });
    await channel.waitForConfirms();
    await channel.close();
  }

  /** Puts messages into a queue until RabbitMQ refuses one; returns how many it holds. */
  async function fillUntilRefused(queue: string): Promise<number> {
    for (let n = 0; n < 10 * MAX_LENGTH; n += 1) {
      try {
        await fixture.put(queue, '{}', { messageId: `filler-${n}` });
      } catch {
        return n;
      }
    }
    throw new Error(`${queue} took ${10 * MAX_LENGTH} messages past its limit of ${MAX_LENGTH}`);
  }

  interface Recorded {
    moved: string[];
    deadLettered: string[];
    provisioned: { user: string; at: number }[];
    waits: number[];
  }

  function startMover(
    queue: string,
    options: Partial<UnroutedMoverOptions> = {},
  ): { mover: UnroutedMover; seen: Recorded; startedAt: number } {
    const seen: Recorded = { moved: [], deadLettered: [], provisioned: [], waits: [] };
    const startedAt = Date.now();
    const mover = new UnroutedMover({
      pool,
      publish: (exchange, routingKey, body, properties) => producer.publishRaw(exchange, routingKey, body, properties),
      publishDeadLetter: deadLetters.publish,
      settings: SETTINGS,
      provisionRatePerSec: 100,
      logger: silentLogger(),
      queue,
      onMoved: (user) => seen.moved.push(user),
      onDeadLettered: (reason) => seen.deadLettered.push(reason),
      onProvisioned: (user) => seen.provisioned.push({ user, at: Date.now() }),
      onProvisionWait: (ms) => seen.waits.push(ms),
      ...options,
    });
    movers.push(mover);
    return { mover, seen, startedAt };
  }

  describe('with a relay delivering', () => {
    let relay: TestRelay;
    beforeAll(async () => {
      // The relay keeps the default QUEUE_MAX_LENGTH: it may be the one moving other tests' unrouted
      // messages, into inboxes it declares. The inboxes here are declared by the test's movers.
      relay = await startTestRelay(testConfig());
    });
    afterAll(async () => {
      await relay.stop();
    });

    it('dead-letters a message whose inbox is full, with its reason, and moves and delivers the one behind it', async () => {
      const source = await unroutedSource();
      const [full, other] = [uid('mover-full'), uid('mover-other')];
      // A tap on the dead-letter exchange sees what reaches inbox.dead without scanning the shared queue.
      const tap = await fixture.privateQueue(uid('mover-tap'));
      cleanup.queues.push(tap);
      await fixture.bind(tap, DEAD_LETTER_EXCHANGE);
      await provisionInbox(() => model.createChannel(), full, SETTINGS);
      // Quorum queues apply the limit once they are over it, so fill until RabbitMQ refuses one.
      const depth = await fillUntilRefused(inboxQueueName(full));

      const fullId = uid('m-full');
      const otherId = uid('m-other');
      await publishUnrouted(source, full, fullId, { to: 'full' });
      await publishUnrouted(source, other, otherId, { to: 'other' });
      const { mover, seen } = startMover(source);
      await mover.start();

      await expect.poll(() => seen.moved, { timeout: 20_000 }).toEqual([other]);
      expect(seen.deadLettered).toEqual([INBOX_FULL_REASON]);
      let dead: ConsumeMessage | undefined;
      await expect
        .poll(
          async () => {
            dead ??= (await fixture.drainQueue(tap)).find((message) => message.properties.messageId === fullId);
            return dead !== undefined;
          },
          { timeout: 10_000, interval: 200 },
        )
        .toBe(true);
      // dlq list shows the relay's reason (the tap's copy of it; the drain below took the first one).
      const { JWT_SECRET: _secret, ...opsEnv } = testEnv({ RABBITMQ_MANAGEMENT_URL: '' });
      await fixture.put(tap, dead!.content, { ...dead!.properties, headers: dead!.properties.headers ?? {} });
      const listed = await cli(['dlq', 'list', '--queue', tap, '--user', full, '--json'], opsEnv);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.json<{ messages: unknown[] }>().messages).toEqual([
        expect.objectContaining({ messageId: fullId, relayReason: INBOX_FULL_REASON, rabbitmqReason: null, queue: source }),
      ]);
      await fixture.drainQueue(tap);
      expect(dead?.content.toString()).toBe('{"to":"full"}');
      expect(dead?.properties.headers).toMatchObject({ [DEAD_LETTER_REASON_HEADER]: INBOX_FULL_REASON, [DEAD_LETTER_USER_HEADER]: full });
      expect(deadLetterUser(dead!.properties)).toBe(full);
      expect(await fixture.depth(inboxQueueName(full))).toBe(depth);
      expect(await fixture.depth(source)).toBe(0);

      const client = await RawClient.connect(relay.url);
      try {
        client.send({ type: 'hello', token: token(other) });
        await client.next('welcome');
        expect(await client.next('msg', 20_000)).toMatchObject({ seq: 1, id: otherId, data: { to: 'other' } });
      } finally {
        client.close();
        await client.closed;
      }

      // The operator makes room and replays it: `dlq replay` finds its user on the relay's header.
      // (This also takes it out of the shared inbox.dead again.)
      await fixture.drainQueue(inboxQueueName(full));
      const { JWT_SECRET: _unused, ...env } = testEnv({ RABBITMQ_MANAGEMENT_URL: '' });
      let replayed: unknown[] = [];
      for (let attempt = 0; attempt < 10 && replayed.length === 0; attempt += 1) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 300));
        const run = await cli(['dlq', 'replay', '--user', full, '--json'], env);
        expect(run.code, run.stderr).toBe(0);
        replayed = run.json<{ replayed: unknown[] }>().replayed;
      }
      expect(replayed).toEqual([{ messageId: fullId, user: full }]);
      const copies = await fixture.drainQueue(inboxQueueName(full));
      expect(copies.map((message) => message.properties.messageId)).toEqual([fullId]);
      expect(copies[0]?.properties.headers?.[DEAD_LETTER_REASON_HEADER]).toBeUndefined();
    });
  });

  it('dead-letters a message whose routing key is not a user id, with the reason invalid-user-id, and moves the one behind it', async () => {
    const source = await unroutedSource();
    const tap = await fixture.privateQueue(uid('mover-tap'));
    cleanup.queues.push(tap);
    await fixture.bind(tap, DEAD_LETTER_EXCHANGE);
    const badId = uid('m-bad-key');
    const user = uid('mover-after');
    await publishUnrouted(source, 'not a user id!', badId, { bad: true });
    await publishUnrouted(source, user, uid('m-after'), { good: true });
    const { mover, seen } = startMover(source);
    await mover.start();
    await expect.poll(() => seen.moved, { timeout: 20_000 }).toEqual([user]);
    expect(seen.deadLettered).toEqual(['invalid-user-id']);
    const { JWT_SECRET: _secret, ...opsEnv } = testEnv({ RABBITMQ_MANAGEMENT_URL: '' });
    let found: unknown;
    await expect
      .poll(
        async () => {
          const run = await cli(['dlq', 'list', '--queue', tap, '--reason', 'invalid-user-id', '--limit', '10000', '--json'], opsEnv);
          found = run.json<{ messages: { messageId: string }[] }>().messages.find((m) => m.messageId === badId);
          return found !== undefined;
        },
        { timeout: 10_000, interval: 200 },
      )
      .toBe(true);
    expect(found).toMatchObject({ user: null, relayReason: 'invalid-user-id', rabbitmqReason: null, queue: source });
    expect(await fixture.depth(source)).toBe(0);
    await fixture.drainQueue(inboxQueueName(user));
  });

  it('confirms the dead-lettered receipt of a message whose inbox is full before its dead letter, and sends none unasked', async () => {
    const source = await unroutedSource();
    const full = uid('mover-rcpt');
    await provisionInbox(() => model.createChannel(), full, SETTINGS);
    await fillUntilRefused(inboxQueueName(full));
    const [asked, unasked] = [uid('m-asked'), uid('m-unasked')];
    await publishUnrouted(source, full, asked, { n: 1 }, { [RECEIPT_HEADER]: true });
    await publishUnrouted(source, full, unasked, { n: 2 });
    const steps: string[] = [];
    const receipts: ReceiptRequest[] = [];
    const { mover, seen } = startMover(source, {
      receipts: {
        publish: async (batch) => {
          receipts.push(...batch);
          steps.push(...batch.map((receipt) => `receipt ${receipt.messageId}`));
        },
      },
      publishDeadLetter: async (message, label) => {
        steps.push(`dead letter ${String(message.properties.messageId)}`);
        await deadLetters.publish(message, label);
      },
    });
    await mover.start();
    await expect.poll(() => seen.deadLettered, { timeout: 20_000 }).toEqual([INBOX_FULL_REASON, INBOX_FULL_REASON]);
    expect(steps).toEqual([`receipt ${asked}`, `dead letter ${asked}`, `dead letter ${unasked}`]);
    expect(receipts).toEqual([
      {
        messageId: asked,
        user: full,
        seq: null,
        epoch: null,
        outcome: 'dead-lettered',
        reason: INBOX_FULL_REASON,
        at: expect.any(Number) as unknown,
      },
    ]);
    await fixture.drainQueue(inboxQueueName(full));
  });

  it('declares inboxes no faster than its cap, says when it waits for it, and moves every message in the end', async () => {
    const source = await unroutedSource();
    const rate = 2;
    const users = Array.from({ length: 8 }, () => uid('mover-burst'));
    for (const [index, user] of users.entries()) await publishUnrouted(source, user, `burst-${index}`, { index });
    const { mover, seen, startedAt } = startMover(source, { provisionRatePerSec: rate });
    await mover.start();

    await expect.poll(() => seen.moved.length, { timeout: 30_000 }).toBe(users.length);
    expect(seen.moved).toEqual(users);
    expect(seen.provisioned.map((entry) => entry.user)).toEqual(users);
    expect(seen.waits.length).toBeGreaterThan(0);
    // An upper bound only (a slow machine declares fewer, never more): by any time t, at most the
    // burst plus rate × t declarations since the bucket was made.
    for (const [index, { at }] of seen.provisioned.entries()) {
      expect(index + 1, `declaration ${index + 1}`).toBeLessThanOrEqual(rate + (rate * (at - startedAt)) / 1000 + 0.01);
    }
    for (const [index, user] of users.entries()) {
      const messages = await fixture.drainQueue(inboxQueueName(user));
      expect(messages.map((message) => message.properties.messageId)).toEqual([`burst-${index}`]);
    }
  });

  it('loses nothing when stopped while it waits for the cap: the messages return to the queue in order', async () => {
    const source = await unroutedSource();
    const users = Array.from({ length: 4 }, () => uid('mover-stop'));
    for (const [index, user] of users.entries()) await publishUnrouted(source, user, `stop-${index}`, { index });
    const first = startMover(source, { provisionRatePerSec: 1 });
    await first.mover.start();
    await expect.poll(() => first.seen.waits.length, { timeout: 20_000 }).toBeGreaterThan(0);
    await first.mover.stop();
    const moved = first.seen.moved.length;
    expect(moved).toBeLessThan(users.length);
    await expect.poll(() => fixture.depth(source), { timeout: 10_000 }).toBe(users.length - moved);

    const second = startMover(source, { provisionRatePerSec: 100 });
    await second.mover.start();
    await expect.poll(() => second.seen.moved, { timeout: 20_000 }).toEqual(users.slice(moved));
  });
});
