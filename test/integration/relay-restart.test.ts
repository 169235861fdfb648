/**
 * The relay process dies mid-stream (SIGKILL) or is stopped (SIGTERM) and is started again:
 * clients resume, and every user still processes seqs 1..200 gap-free in publish order.
 */
import { appendFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import { loadConfig } from '../../src/config.js';
import { freePort } from '../../src/process/free-port.js';
import { RelayProcess, type RelayProcessOptions } from '../../src/process/relay-process.js';
import { SoakClient, checkSoak, untilAllProcessed } from '../helpers/soak-client.js';
import { queueCounts, testEnv, testProducer, token, uid } from '../helpers/relay.js';

const USERS = 50;
const MESSAGES = 200;
/** Set CHILD_RELAY_LOG_DIR to keep every child relay's log there (one file per process). */
const LOG_DIR = process.env.CHILD_RELAY_LOG_DIR;

/** A relay child that logs at info (readiness is its "listening" line) into `logs`. */
function startRelay(env: Record<string, string | undefined>, logs: string[]): Promise<RelayProcess> {
  let pid: number | undefined;
  const options: RelayProcessOptions = {
    env: { ...env, LOG_LEVEL: 'info' },
    onSpawn: (spawned) => {
      pid = spawned;
    },
    onLine: (line) => {
      logs.push(line);
      if (LOG_DIR) appendFileSync(`${LOG_DIR}/relay-${pid}.log`, `${line}\n`);
    },
  };
  return RelayProcess.start(options);
}

describe.each([
  ['quorum', 'SIGKILL'],
  ['classic', 'SIGKILL'],
  ['quorum', 'SIGTERM'],
] as const)('relay restart mid-stream (%s queues, %s)', (queueType, signal) => {
  const producers: Producer[] = [];
  const relays: RelayProcess[] = [];
  afterAll(async () => {
    for (const producer of producers) await producer.close();
    for (const relay of relays) await relay.stop('SIGKILL');
  });

  it('loses nothing and keeps order across the restart', async () => {
    const port = await freePort();
    const env = testEnv({ QUEUE_TYPE: queueType, PORT: String(port), WINDOW_DEFAULT: '10', DRAIN_TIMEOUT_MS: '10000' });
    const firstLogs: string[] = [];
    const first = await startRelay(env, firstLogs);
    relays.push(first);
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
    // Escalating to SIGKILL only well after DRAIN_TIMEOUT_MS, so a slow drain shows as such.
    const stopped = await first.stop(signal, 20_000);
    if (signal === 'SIGTERM') {
      // Drained and exited by itself, within DRAIN_TIMEOUT_MS.
      expect(stopped.code, firstLogs.slice(-15).join('\n')).toBe(0);
      expect(stopped.ms).toBeLessThan(10_000);
    }
    const secondLogs: string[] = [];
    const second = await startRelay(env, secondLogs);
    relays.push(second);
    await publishing;
    try {
      await untilAllProcessed(clients, users, MESSAGES, 90_000, (user) => queueCounts(user));
    } catch (error) {
      const warnings = [...firstLogs, ...secondLogs].filter((line) => /"level":(40|50|60)/.test(line)).slice(-40);
      throw new Error(`${(error as Error).message}\nrelay warnings:\n${warnings.join('\n')}`, { cause: error });
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
