/**
 * Delivery receipts against the real RabbitMQ and Redis, through one relay process, or two
 * sharing the users (clients connect to either), one of them SIGKILLed once mid-stream and
 * started again: 20 users x 50 messages that ask for a receipt
 * (and 5 each that do not), clients that drop and resume, and nack some without requeue. Every
 * message a client acked has an `acked` receipt, every dead-lettered one a `dead-lettered` receipt
 * with its reason, no message that was not acked has an `acked` receipt, and the messages that
 * did not ask have none. Duplicates are allowed (at least once) and counted.
 */
import amqp from 'amqplib';
import { afterAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import type { ReceiptStream } from '../../src/amqp/receipt-stream.js';
import { DEAD_LETTER_EXCHANGE, DEAD_LETTER_REASON_HEADER, RECEIPTS_EXCHANGE, inboxQueueName } from '../../src/amqp/topology.js';
import { loadConfig } from '../../src/config.js';
import { RECEIPT_HEADER, encodeReceipt, type DeliveryReceipt } from '../../src/delivery/delivery-receipt.js';
import { freePort } from '../../src/process/free-port.js';
import { RelayProcess } from '../../src/process/relay-process.js';
import { RawClient } from '../helpers/raw-client.js';
import { ReceiptClient } from '../helpers/receipt-client.js';
import {
  queueCounts,
  rabbitmqUrl,
  startTestRelay,
  testConfig,
  testEnv,
  testProducer,
  token,
  uid,
  type TestRelay,
} from '../helpers/relay.js';

const USERS = 20;
/** Per user: 55 messages, n = 1..55; every 11th does not ask for a receipt, n % 10 === 7 is nacked. */
const MESSAGES = 55;
/** Two more per user that ask for a receipt, delivered but never acked (the clients stop at seq 55). */
const TAIL = 2;

interface DeadLetterSeen {
  messageId: string | undefined;
  reason: unknown;
  user: unknown;
}

/** Every dead letter published to inbox.dlx while the test runs, with the relay's reason. */
async function tapDeadLetters(): Promise<{ seen: DeadLetterSeen[]; close(): Promise<void> }> {
  const seen: DeadLetterSeen[] = [];
  const connection = await amqp.connect(rabbitmqUrl());
  const channel = await connection.createChannel();
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, DEAD_LETTER_EXCHANGE, '');
  await channel.consume(
    queue,
    (message) => {
      if (!message) return;
      const headers = message.properties.headers ?? {};
      const messageId = typeof message.properties.messageId === 'string' ? message.properties.messageId : undefined;
      seen.push({ messageId, reason: headers[DEAD_LETTER_REASON_HEADER], user: headers['x-inbox-relay-user'] });
    },
    { noAck: true },
  );
  return { seen, close: () => connection.close() };
}

/** Reads every receipt of `stream` into `into` until the stream is closed. */
function collect(stream: ReceiptStream, into: DeliveryReceipt[]): Promise<void> {
  return (async () => {
    for await (const receipt of stream) into.push(receipt);
  })().catch(() => undefined);
}

async function deleteQueue(queue: string): Promise<void> {
  const connection = await amqp.connect(rabbitmqUrl());
  try {
    const channel = await connection.createChannel();
    await channel.deleteQueue(queue);
  } finally {
    await connection.close().catch(() => undefined);
  }
}

async function until(predicate: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('delivery receipts', () => {
  const producers: Producer[] = [];
  const relays: RelayProcess[] = [];
  const inProcess: TestRelay[] = [];
  const queues: string[] = [];
  afterAll(async () => {
    for (const producer of producers) await producer.close();
    for (const relay of relays) await relay.stop('SIGKILL');
    for (const relay of inProcess) await relay.stop();
    for (const queue of queues) await deleteQueue(queue).catch(() => undefined);
  });

  it.each([1, 2])(
    'one per settled message, at least once, across client drops and a relay SIGKILL (%i node(s))',
    async (nodes) => {
      const startedAt = Date.now();
      const ports = await Promise.all(Array.from({ length: nodes }, () => freePort()));
      // One key prefix for every node: they share the users' numbering.
      const env = testEnv({ WINDOW_DEFAULT: '10', LOG_LEVEL: 'info' });
      const logs: string[] = [];
      // Readiness is the relay's "listening" line (info); each process names itself in its receipts.
      const start = (nodeId: string, port: number) =>
        RelayProcess.start({ env: { ...env, PORT: String(port), NODE_ID: nodeId }, onLine: (line) => logs.push(line) });
      const first = await start('relay-a', ports[0]!);
      relays.push(first);
      if (nodes === 2) relays.push(await start('relay-b', ports[1]!));
      const nodeIds = ['relay-a', 'relay-b', 'relay-a2'];
      const producer = testProducer(loadConfig(env));
      producers.push(producer);
      const users = Array.from({ length: USERS }, (_, i) => uid(`rcpt${i}`));
      const receiptQueue = uid('receipts-q');
      queues.push(receiptQueue);
      const receipts: DeliveryReceipt[] = [];
      const stream = producer.receipts({ queue: receiptQueue, users });
      await stream.ready();
      const collecting = collect(stream, receipts);
      const dead = await tapDeadLetters();

      const asked = new Set<string>();
      const plain = new Set<string>();
      const tail = new Set<string>();
      const published = new Map<string, { user: string; n: number }>();
      // Each connection goes to a node picked at random (a load balancer).
      const url = () => `ws://127.0.0.1:${ports[Math.floor(Math.random() * ports.length)]!}/v1/stream`;
      const clients = users.map((user) => new ReceiptClient({ url, token: () => token(user), maxSeq: MESSAGES, dropRate: 1 / 40 }));
      for (const client of clients) client.start();
      const publishing = Promise.all(
        users.map(async (user) => {
          for (let n = 1; n <= MESSAGES + TAIL; n += 1) {
            const wantsReceipt = n % 11 !== 0;
            const { messageId } = await producer.publish(user, { n, nack: n % 10 === 7 }, { receipt: wantsReceipt });
            published.set(messageId, { user, n });
            (n > MESSAGES ? tail : wantsReceipt ? asked : plain).add(messageId);
          }
        }),
      );
      const progress = () => clients.reduce((sum, client) => sum + client.lastSeq, 0);
      await until(
        () => progress() >= (USERS * MESSAGES) / 3,
        30_000,
        () => `a third processed (${progress()})`,
      );
      await first.stop('SIGKILL');
      relays.push(await start('relay-a2', ports[0]!));
      await publishing;
      try {
        await until(
          () => clients.every((client) => client.lastSeq >= MESSAGES),
          40_000,
          () => `every client at seq ${MESSAGES} (${clients.map((c) => c.lastSeq).join(',')})`,
        );
      } catch (error) {
        const warnings = logs.filter((line) => /"level":(40|50|60)/.test(line)).slice(-30);
        throw new Error(`${(error as Error).message}\nrelay warnings:\n${warnings.join('\n')}`, { cause: error });
      }
      for (const client of clients) client.flushAck();

      const acked = new Set(clients.flatMap((client) => [...client.acked]));
      const nacked = new Set(clients.flatMap((client) => [...client.nacked]));
      const mine = new Set([...asked, ...plain, ...tail]);
      // Read again at each check: a dead letter's copy goes out after its receipt.
      const deadLettered = new Map<string, DeadLetterSeen>();
      const readDeadLetters = () => {
        for (const d of dead.seen) if (d.messageId !== undefined && mine.has(d.messageId)) deadLettered.set(d.messageId, d);
      };
      const outcomes = () => {
        const byId = new Map<string, DeliveryReceipt[]>();
        for (const receipt of receipts) byId.set(receipt.messageId, [...(byId.get(receipt.messageId) ?? []), receipt]);
        return byId;
      };
      const missing = () => {
        readDeadLetters();
        const byId = outcomes();
        const ackedMissing = [...acked].filter((id) => asked.has(id) && !byId.get(id)?.some((r) => r.outcome === 'acked'));
        const deadMissing = [...deadLettered.keys()].filter(
          (id) => asked.has(id) && !byId.get(id)?.some((r) => r.outcome === 'dead-lettered'),
        );
        return [...ackedMissing, ...deadMissing];
      };
      try {
        await until(
          () => missing().length === 0,
          20_000,
          () => `receipts of ${missing().length} settled messages (${missing().slice(0, 5).join(', ')})`,
        );
      } catch (error) {
        const detail = await Promise.all(
          missing().map(async (id) => {
            const { user, n } = published.get(id)!;
            const client = clients[users.indexOf(user)]!;
            const counts = await queueCounts(user).catch((e: unknown) => String(e));
            return { id, user, n, acked: acked.has(id), dead: deadLettered.get(id)?.reason, lastSeq: client.lastSeq, counts };
          }),
        );
        const warnings = logs.filter((line) => /"level":(40|50|60)/.test(line)).slice(-30);
        throw new Error(`${(error as Error).message}\n${JSON.stringify(detail, null, 1)}\nrelay warnings:\n${warnings.join('\n')}`, {
          cause: error,
        });
      }
      // Receipts of the tail (never acked) or of plain messages would have come with the others.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await stream.close();
      await collecting;
      readDeadLetters();
      await dead.close();
      for (const client of clients) client.stop();

      const byId = outcomes();
      const duplicates = [...byId.entries()].filter(([, list]) => list.length > 1);
      const nackedNotDead = [...nacked].filter((id) => !deadLettered.has(id));
      console.log(
        `[receipts] ${receipts.length} receipts for ${byId.size} messages: ${receipts.filter((r) => r.outcome === 'acked').length} acked, ` +
          `${receipts.filter((r) => r.outcome === 'dead-lettered').length} dead-lettered; ${duplicates.length} messages with duplicates ` +
          `(${duplicates.reduce((sum, [, list]) => sum + list.length - 1, 0)} extra), e.g. ${JSON.stringify(duplicates.slice(0, 3).map(([id, list]) => [id, list.map((r) => `${r.outcome}@${r.node}`)]))}; ` +
          `client-acked ${acked.size}, dead-lettered ${deadLettered.size}, nacked but not dead-lettered (a nack lost with the killed relay) ${nackedNotDead.length}; ` +
          `by node ${JSON.stringify(Object.fromEntries(nodeIds.map((id) => [id, receipts.filter((r) => r.node === id).length])))}; ` +
          `${Date.now() - startedAt} ms`,
      );

      // Every message a client acked has an `acked` receipt; every dead-lettered one a `dead-lettered` receipt with its reason.
      expect(missing()).toEqual([]);
      for (const [id, deadLetter] of deadLettered) {
        if (!asked.has(id)) continue;
        const reasons = byId
          .get(id)!
          .filter((r) => r.outcome === 'dead-lettered')
          .map((r) => r.reason);
        expect(reasons.length, id).toBeGreaterThan(0);
        for (const reason of reasons) expect(reason, id).toBe(deadLetter.reason);
      }
      // A nack the killed relay had not recorded is lost with it, and the client's resume past the seq
      // says it was processed (docs/PROTOCOL.md 1.2, item 8): the message is acked, and its receipt says so.
      for (const id of nackedNotDead)
        expect(
          byId.get(id)?.map((r) => r.outcome),
          id,
        ).toContain('acked');
      // No `acked` receipt for a message no client acked (or resumed past); none at all for the tail and the plain messages.
      const ackedWithoutAck = receipts
        .filter((r) => r.outcome === 'acked' && !acked.has(r.messageId) && !nackedNotDead.includes(r.messageId))
        .map((r) => r.messageId);
      expect(ackedWithoutAck).toEqual([]);
      expect(receipts.filter((r) => tail.has(r.messageId) || plain.has(r.messageId))).toEqual([]);
      expect(receipts.filter((r) => !mine.has(r.messageId))).toEqual([]);
      // What the scenario must have covered, or it proves nothing.
      expect(asked.size).toBe(USERS * (MESSAGES - 5));
      expect(acked.size).toBeGreaterThan(USERS * 40);
      expect(deadLettered.size).toBeGreaterThan(USERS * 3);
      expect(clients.flatMap((client) => client.closeCodes)).toContain(1006);
      for (const receipt of receipts) {
        expect(users).toContain(receipt.user);
        expect(nodeIds).toContain(receipt.node);
        if (receipt.outcome === 'acked') expect(receipt.seq).toBeGreaterThan(0);
      }
      expect(clients.flatMap((client) => client.resets)).toEqual([]);
    },
    120_000,
  );

  it('dead-letters a message that asks for a receipt without a messageId, and goes on with the next', async () => {
    const relay = await startTestRelay(testConfig());
    inProcess.push(relay);
    const user = uid('rcpt-bad');
    const producer = testProducer(relay.config);
    producers.push(producer);
    const receiptQueue = uid('receipts-q');
    queues.push(receiptQueue);
    const receipts: DeliveryReceipt[] = [];
    const stream = producer.receipts({ queue: receiptQueue, users: [user] });
    await stream.ready();
    const collecting = collect(stream, receipts);
    const dead = await tapDeadLetters();
    await producer.publish(user, { first: true }, { messageId: `${user}-first`, receipt: true });
    const connection = await amqp.connect(rabbitmqUrl());
    const channel = await connection.createConfirmChannel();
    await new Promise<void>((resolve, reject) =>
      channel.publish('inbox', user, Buffer.from('{"bad":true}'), { persistent: true, headers: { [RECEIPT_HEADER]: true } }, (error) =>
        error ? reject(error as Error) : resolve(),
      ),
    );
    await connection.close();
    await producer.publish(user, { next: true }, { messageId: `${user}-next`, receipt: true });

    const client = await RawClient.connect(relay.url);
    client.ws.send(JSON.stringify({ type: 'hello', token: token(user) }));
    const first = await client.next('msg');
    const second = await client.next('msg');
    expect([first, second].map((frame) => [frame.seq, frame.id])).toEqual([
      [1, `${user}-first`],
      [2, `${user}-next`],
    ]);
    client.ws.send(JSON.stringify({ type: 'ack', seq: 2 }));
    await until(
      () => receipts.length >= 2 && dead.seen.some((d) => d.user === user),
      10_000,
      () => `two receipts and the dead letter (${receipts.length}, ${dead.seen.length})`,
    );
    expect(dead.seen.filter((d) => d.user === user)).toEqual([{ messageId: undefined, reason: 'receipt-without-message-id', user }]);
    expect(receipts.map((r) => [r.messageId, r.outcome, r.seq]).sort()).toEqual([
      [`${user}-first`, 'acked', 1],
      [`${user}-next`, 'acked', 2],
    ]);
    client.ws.close();
    await stream.close();
    await collecting;
    await dead.close();
    // Nothing is left in the inbox: the bad message went to inbox.dead, the others were acked.
    const check = await amqp.connect(rabbitmqUrl());
    const { messageCount } = await (await check.createChannel()).checkQueue(inboxQueueName(user));
    await check.close();
    expect(messageCount).toBe(0);
  }, 30_000);

  it('reads receipts of the bound users only, acks one when the loop asks for the next, skips what is not a receipt', async () => {
    const producer = testProducer(testConfig());
    producers.push(producer);
    const [mine, other] = [uid('rcpt-reader'), uid('rcpt-other')];
    const receiptQueue = uid('receipts-q');
    queues.push(receiptQueue);
    const first = producer.receipts({ queue: receiptQueue, users: [mine], prefetch: 10 });
    await first.ready();
    const connection = await amqp.connect(rabbitmqUrl());
    const channel = await connection.createConfirmChannel();
    const put = async (user: string, body: Buffer): Promise<void> => {
      channel.publish(RECEIPTS_EXCHANGE, user, body, { persistent: true });
      await channel.waitForConfirms();
    };
    const make = (messageId: string, user: string): DeliveryReceipt => ({
      messageId,
      user,
      seq: 1,
      epoch: 'e1',
      outcome: 'acked',
      at: 1,
      node: 'n1',
    });
    await put(mine, encodeReceipt(make('r1', mine)));
    await put(mine, Buffer.from('not a receipt'));
    await put(other, encodeReceipt(make('r-other', other)));
    await put(mine, encodeReceipt(make('r2', mine)));
    const seen: string[] = [];
    for await (const receipt of first) {
      seen.push(receipt.messageId);
      // Breaking out while holding r2 leaves it in the queue.
      if (receipt.messageId === 'r2') break;
    }
    expect(seen).toEqual(['r1', 'r2']);
    expect(first.skipped).toBe(1);
    await put(mine, encodeReceipt(make('r3', mine)));
    const second = producer.receipts({ queue: receiptQueue, users: [mine] });
    const again: string[] = [];
    for await (const receipt of second) {
      again.push(receipt.messageId);
      if (receipt.messageId === 'r3') break;
    }
    // r1 was acked when the loop asked for r2; r2 comes again; the other user's receipt never came.
    expect(again).toEqual(['r2', 'r3']);
    await connection.close();
  });
});
