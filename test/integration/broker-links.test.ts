/**
 * The relay and the producer against a broker reached through several URLs (RABBITMQ_URL as a
 * list): a node that does not answer is skipped, a link that goes silent without closing (a TCP
 * proxy that swallows every byte) is noticed through the AMQP heartbeat and the consumers move to
 * the next URL, and a producer whose link is cut mid-stream publishes every message on the next
 * one. Nothing lost, nothing out of order. Only this test's proxies are disturbed.
 */
import amqp from 'amqplib';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ConnectionPool } from '../../src/amqp/connection-pool.js';
import { Producer } from '../../src/amqp/producer.js';
import { inboxQueueName } from '../../src/amqp/topology.js';
import { ErrorCode, isRelayError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { freePort } from '../../src/process/free-port.js';
import { RawClient } from '../helpers/raw-client.js';
import { rabbitmqUrl, startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const broker = () => {
  const url = new URL(rabbitmqUrl());
  return { host: url.hostname, port: Number(url.port || 5672) };
};

describe('broker links', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('skips a node that does not answer and connects to the next URL', async () => {
    const dead = rabbitmqUrl().replace(/:\d+(\/|$)/, `:${await freePort()}$1`);
    const pool = new ConnectionPool({
      url: [dead, rabbitmqUrl()],
      name: uid('pool'),
      channelsPerConnection: 4,
      logger: silentLogger(),
      heartbeatS: 5,
    });
    cleanups.push(() => pool.close());
    const channel = await pool.openChannel();
    await channel.checkExchange('amq.direct');
    expect(pool.connectedHosts).toEqual([`${broker().host}:${broker().port}`]);
  });

  it('notices a silent link within 3 heartbeats and moves the consumers to the next node: every message, in order', async () => {
    const proxy = new TcpProxy(broker());
    await proxy.start();
    cleanups.push(() => proxy.stop());
    const heartbeatS = 2;
    const relay: TestRelay = await startTestRelay(
      testConfig({
        RABBITMQ_URL: `${proxy.urlFor(rabbitmqUrl())},${rabbitmqUrl()}`,
        RABBITMQ_HEARTBEAT_S: String(heartbeatS),
        WINDOW_DEFAULT: '10',
      }),
    );
    cleanups.push(() => relay.stop());
    // The producer goes straight to the broker: only the relay's links pass the proxy.
    const producer = testProducer({ ...relay.config, rabbitmqUrl: rabbitmqUrl() });
    cleanups.push(() => producer.close());
    const user = uid('silent');
    const client = await RawClient.connect(relay.url);
    client.send({ type: 'hello', token: token(user) });
    await client.next('welcome');
    const received: { seq: number; id: string }[] = [];
    const take = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i += 1) {
        const frame = await client.next('msg', 60_000);
        if (!received.some((m) => m.seq === frame.seq)) received.push({ seq: frame.seq, id: frame.id });
        client.send({ type: 'ack', seq: frame.seq });
      }
    };
    const published: string[] = [];
    for (let n = 1; n <= 10; n += 1) published.push((await producer.publish(user, { n })).messageId);
    await take(10);
    expect(proxy.connections).toBeGreaterThan(0);

    const lost = new Promise<number>((resolve) => {
      const start = Date.now();
      relay.relay.events.on('consumer-lost', () => resolve(Date.now() - start));
    });
    proxy.freeze();
    for (let n = 11; n <= 20; n += 1) published.push((await producer.publish(user, { n })).messageId);
    const noticedMs = await lost;
    await take(10);
    // Seqs 1-20 in order, one message each, the published ones.
    expect(received.map((m) => m.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(received.map((m) => m.id)).toEqual(published);
    // amqplib gives up after two silent heartbeat intervals; three leave room for a slow event loop.
    expect(noticedMs).toBeLessThanOrEqual(3 * heartbeatS * 1000 + 1_000);
    console.info(`silent broker link noticed after ${noticedMs} ms (heartbeat ${heartbeatS} s)`);
    client.close();
  });

  it('publishes every message through a cut link: each publish that resolved is in the queue, once', async () => {
    const proxy = new TcpProxy(broker());
    await proxy.start();
    cleanups.push(() => proxy.stop());
    const user = uid('cut');
    const producer = new Producer({
      url: [proxy.urlFor(rabbitmqUrl()), rabbitmqUrl()],
      provision: { queueType: 'quorum', queueMaxLength: 10_000, queueDeliveryLimit: 20 },
      logger: silentLogger(),
    });
    cleanups.push(() => producer.close());
    const confirmed: string[] = [];
    const publishing = (async () => {
      for (let n = 1; n <= 300; n += 1) confirmed.push((await producer.publish(user, { n }, { messageId: `${user}-${n}` })).messageId);
    })();
    await expect.poll(() => confirmed.length, { timeout: 30_000, interval: 5 }).toBeGreaterThan(50);
    proxy.cut();
    await publishing;
    expect(producer.retried).toBeGreaterThanOrEqual(1);
    // Read the inbox back: every confirmed id, in publish order (a retried copy may appear twice).
    const connection = await amqp.connect(rabbitmqUrl());
    cleanups.push(() => connection.close());
    const channel = await connection.createChannel();
    const queue = inboxQueueName(user);
    const { messageCount } = await channel.checkQueue(queue);
    const ids: string[] = [];
    await channel.consume(queue, (message) => message && ids.push(String(message.properties.messageId)), { noAck: true });
    await expect.poll(() => ids.length, { timeout: 10_000 }).toBe(messageCount);
    const distinct = ids.filter((id, index) => ids.indexOf(id) === index);
    expect(distinct).toEqual(confirmed);
    console.info(`producer: 300 publishes, ${producer.retried} retried, ${ids.length - distinct.length} copies in the queue`);
    await channel.deleteQueue(queue);
  });

  it('tries a refused publish again on a new channel, and reports the refusal of a full inbox after the last try', async () => {
    const user = uid('refused');
    const queue = inboxQueueName(user);
    let refusals = 0;
    let onRefusal = (): void => undefined;
    const logger = pino(
      { level: 'warn' },
      {
        write(line: string) {
          if (line.includes('trying again')) {
            refusals += 1;
            onRefusal();
          }
        },
      },
    );
    const producer = new Producer({
      url: rabbitmqUrl(),
      provision: { queueType: 'quorum', queueMaxLength: 1, queueDeliveryLimit: 20 },
      nackRetryDelaysMs: [100, 100, 100, 100, 100, 100, 100, 100],
      logger,
    });
    cleanups.push(() => producer.close());
    const connection = await amqp.connect(rabbitmqUrl());
    cleanups.push(() => connection.close());
    const channel = await connection.createChannel();
    // A quorum queue refuses once it is over its limit (not at it): fill it until a first refusal.
    const fill = async (): Promise<void> => {
      let full = false;
      for (let n = 1; n <= 10 && !full; n += 1) {
        full = await filler.publish(user, { n }).then(
          () => false,
          (caught: unknown) => isRelayError(caught, ErrorCode.publishNacked),
        );
      }
      expect(full).toBe(true);
    };
    const filler = new Producer({ url: rabbitmqUrl(), nackRetryDelaysMs: [], logger: silentLogger() });
    cleanups.push(() => filler.close());
    await producer.publish(user, { n: 1 }, { messageId: `${user}-1` });
    await fill();

    // The inbox is full; it is emptied after the first refusal, so a later try is accepted.
    onRefusal = () => {
      onRefusal = () => undefined;
      channel.purgeQueue(queue).catch(() => undefined);
    };
    await producer.publish(user, { n: 2 }, { messageId: `${user}-2` });
    expect(refusals).toBeGreaterThanOrEqual(1);
    expect(producer.retried).toBe(1);
    expect((await channel.checkQueue(queue)).messageCount).toBe(1);

    // Full again: every try is refused, then the refusal is reported.
    await fill();
    refusals = 0;
    const error = await producer.publish(user, { n: 3 }, { messageId: `${user}-3` }).catch((caught: unknown) => caught);
    expect(isRelayError(error, ErrorCode.publishNacked), String(error)).toBe(true);
    expect(refusals).toBe(8);
    expect(producer.retried).toBe(2);
    expect(filler.retried).toBe(0);
    await channel.deleteQueue(queue);
  });
});
