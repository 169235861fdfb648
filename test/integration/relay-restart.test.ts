/**
 * The relay process dies mid-stream (SIGKILL) or is stopped (SIGTERM) and is started again:
 * clients resume, and every user still processes seqs 1..200 gap-free in publish order.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import { loadConfig } from '../../src/config.js';
import { ChildRelay, freePort } from '../helpers/child-relay.js';
import { SoakClient, checkSoak, untilAllProcessed } from '../helpers/soak-client.js';
import { queueCounts, testEnv, testProducer, token, uid } from '../helpers/relay.js';

const USERS = 50;
const MESSAGES = 200;

describe.each([
  ['quorum', 'SIGKILL'],
  ['classic', 'SIGKILL'],
  ['quorum', 'SIGTERM'],
] as const)('relay restart mid-stream (%s queues, %s)', (queueType, signal) => {
  const producers: Producer[] = [];
  const relays: ChildRelay[] = [];
  afterAll(async () => {
    for (const producer of producers) await producer.close();
    for (const relay of relays) await relay.stop('SIGKILL');
  });

  it('loses nothing and keeps order across the restart', async () => {
    const port = await freePort();
    const env = testEnv({ QUEUE_TYPE: queueType, PORT: String(port), WINDOW_DEFAULT: '10', DRAIN_TIMEOUT_MS: '10000' });
    const first = new ChildRelay(env);
    relays.push(first);
    await first.start();
    const producer = testProducer(loadConfig(env));
    producers.push(producer);
    const users = Array.from({ length: USERS }, (_, i) => uid(`crash${i}`));
    const url = `ws://127.0.0.1:${port}/v1/stream`;
    const clients = users.map((user) => new SoakClient({ url, token: () => token(user), dropRate: 1 / 100, ackEvery: 3 }));
    for (const client of clients) client.start();
    const published = new Map<string, string[]>(users.map((user) => [user, []]));
    const publishing = Promise.all(
      users.map(async (user) => {
        for (let n = 1; n <= MESSAGES; n += 1) published.get(user)!.push((await producer.publish(user, { n })).messageId);
      }),
    );
    // Stop the relay once deliveries are well under way, while messages are in flight.
    await clients[0]!.until(() => clients.reduce((sum, c) => sum + c.lastSeq, 0) >= (USERS * MESSAGES) / 3, 60_000, 'a third delivered');
    const stopped = await first.stop(signal);
    if (signal === 'SIGTERM') {
      // Drained and exited by itself, within DRAIN_TIMEOUT_MS.
      expect(stopped.code, first.logs.slice(-15).join('\n')).toBe(0);
      expect(stopped.ms).toBeLessThan(10_000);
    }
    const second = new ChildRelay(env);
    relays.push(second);
    await second.start();
    await publishing;
    try {
      await untilAllProcessed(clients, users, MESSAGES, 90_000, (user) => queueCounts(user));
    } catch (error) {
      const warnings = [...first.logs, ...second.logs].filter((line) => /"level":(40|50|60)/.test(line)).slice(-40);
      throw new Error(`${(error as Error).message}\nrelay warnings:\n${warnings.join('\n')}`);
    }
    for (const client of clients) client.stop();

    users.forEach((user, i) => {
      const client = clients[i]!;
      expect(checkSoak(client, published.get(user)!), user).toEqual([]);
      for (const record of client.received) expect((record.data as { n: number }).n).toBe(record.seq);
    });
    const codes = clients.flatMap((client) => client.closeCodes);
    // SIGTERM drains: clients are told to reconnect (1012); SIGKILL just drops them (1006).
    expect(codes).toContain(signal === 'SIGTERM' ? 1012 : 1006);
  });
});
