/**
 * Presence across three relay processes (dist/) on the real RabbitMQ and Redis, with the default
 * timing (refresh 20 s, entry TTL 50 s, sweep 5 s):
 * - a user is online within 1 s of its welcome, with each connection's node and device label;
 * - after a drain (SIGTERM) the user is offline within 1 s of its last connection's close, with
 *   lastSeen set;
 * - after a SIGKILL of its node, within 60 s (the other nodes' sweeps find the expired entries);
 * - one `online` and one `offline` event on `inbox.presence` per user (routing key = user),
 *   however many connections and however many nodes sweep;
 * - a hello with an oversized device label is closed with 1008 and a clear reason, and nothing
 *   else changes.
 * The producer library's `presence()` is what the test polls; the CLI answers the same.
 */
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/amqp/producer.js';
import { PRESENCE_EXCHANGE } from '../../src/amqp/topology.js';
import type { UserPresence } from '../../src/presence/presence-store.js';
import type { PresenceEvent } from '../../src/presence/presence-tracker.js';
import { waitUntil } from '../../src/wait-until.js';
import { cli } from '../helpers/ops-cli.js';
import { RawClient } from '../helpers/raw-client.js';
import { RelayCluster } from '../helpers/relay-cluster.js';
import { rabbitmqUrl, redisUrl, token, uid } from '../helpers/relay.js';

interface Seen extends PresenceEvent {
  routingKey: string;
  receivedAt: number;
}

let cluster: RelayCluster | undefined;
let connection: ChannelModel | undefined;
let channel: Channel | undefined;
let producer: Producer | undefined;
const clients: RawClient[] = [];
const events: Seen[] = [];

const users = {
  drained: uid('drained'),
  killedOne: uid('killed'),
  killedTwo: uid('killed'),
  kept: uid('kept'),
  refused: uid('refused'),
};
const figures: Record<string, number> = {};

beforeAll(async () => {
  cluster = await RelayCluster.start({ nodes: 3 });
  producer = new Producer({ url: rabbitmqUrl(), redis: redisUrl(), redisKeyPrefix: String(cluster.env.REDIS_KEY_PREFIX) });
  connection = await amqp.connect(rabbitmqUrl());
  channel = await connection.createChannel();
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  for (const user of Object.values(users)) await channel.bindQueue(queue, PRESENCE_EXCHANGE, user);
  await channel.consume(
    queue,
    (message) => {
      if (!message) return;
      const body = JSON.parse(message.content.toString('utf8')) as PresenceEvent;
      events.push({ ...body, routingKey: message.fields.routingKey, receivedAt: Date.now() });
    },
    { noAck: true },
  );
}, 60_000);

afterAll(async () => {
  for (const client of clients) client.terminate();
  await cluster?.stop();
  await producer?.close();
  await connection?.close();
  if (Object.keys(figures).length > 0) console.log(`presence figures (ms): ${JSON.stringify(figures)}`);
});

async function connect(node: number, user: string, device?: string): Promise<{ client: RawClient; welcomedAt: number }> {
  const client = await RawClient.connect(cluster!.url(node));
  clients.push(client);
  client.send({ type: 'hello', token: token(user), ...(device === undefined ? {} : { device }) });
  await client.next('welcome');
  return { client, welcomedAt: Date.now() };
}

function presence(user: string): Promise<UserPresence> {
  return producer!.presence(user);
}

/** Polls presence until `check` holds, within `timeoutMs`; resolves with the time it took from `since`. */
async function presenceWithin(user: string, check: (found: UserPresence) => boolean, since: number, timeoutMs: number): Promise<number> {
  let last: UserPresence | undefined;
  await waitUntil(async () => check((last = await presence(user))), {
    timeoutMs,
    intervalMs: 20,
    what: () => `presence of ${user} (last: ${JSON.stringify(last)})`,
  });
  return Date.now() - since;
}

const eventsOf = (user: string) => events.filter((event) => event.routingKey === user);
const shape = (user: string) => eventsOf(user).map(({ user: who, online, connections }) => ({ user: who, online, connections }));

describe('presence', () => {
  it('is online within 1 s of a welcome, with each connection, and announced once', async () => {
    const user = users.drained;
    const first = await connect(0, user, 'phone');
    figures.onlineAfterWelcome = await presenceWithin(user, (found) => found.online, first.welcomedAt, 1_000);
    await connect(0, user, 'laptop');
    await presenceWithin(user, (found) => found.connections.length === 2, Date.now(), 1_000);
    const found = await presence(user);
    expect(found.connections.map(({ node, device }) => ({ node, device }))).toEqual([
      { node: 'n1', device: 'phone' },
      { node: 'n1', device: 'laptop' },
    ]);
    expect(found.connections[0]!.since).toBeLessThanOrEqual(found.connections[1]!.since);
    await waitUntil(() => eventsOf(user).length > 0, { timeoutMs: 5_000, what: 'the online event' });
    expect(shape(user)).toEqual([{ user, online: true, connections: 1 }]);

    await connect(1, users.killedOne);
    await connect(1, users.killedTwo, 'tablet');
    await connect(1, users.killedTwo);
    const kept = await connect(2, users.kept, 'desk');
    for (const other of [users.killedOne, users.killedTwo, users.kept]) {
      await presenceWithin(other, (entry) => entry.online, kept.welcomedAt, 5_000);
    }
    expect((await presence(users.killedTwo)).connections).toHaveLength(2);
  });

  it('refuses an oversized device label with 1008 and a clear reason, and nothing else changes', async () => {
    const refused = await RawClient.connect(cluster!.url(2));
    clients.push(refused);
    refused.send({ type: 'hello', token: token(users.refused), device: 'x'.repeat(65) });
    expect(await refused.closeCode()).toEqual({ code: 1008, reason: 'device: at most 64 characters' });
    expect(await presence(users.refused)).toEqual({ user: users.refused, online: false, connections: [] });
    const kept = clients.find((client) => client !== refused && client.ws.url.includes(String(cluster!.nodes[2]!.port)))!;
    kept.send({ type: 'ping', id: 'still-there' });
    expect(await kept.next('pong')).toEqual({ type: 'pong', id: 'still-there' });
    expect((await presence(users.kept)).connections).toMatchObject([{ node: 'n3', device: 'desk' }]);
  });

  it('is offline within 1 s of the last close on a drain, with lastSeen, announced once', async () => {
    const user = users.drained;
    const mine = clients.filter((client) => client.ws.url.includes(String(cluster!.nodes[0]!.port)));
    expect(mine).toHaveLength(2);
    const closes = Promise.all(mine.map((client) => client.closeCode(20_000).then((closed) => ({ ...closed, at: Date.now() }))));
    const drained = cluster!.terminate(0);
    const closed = await closes;
    expect(closed.map(({ code }) => code)).toEqual([1012, 1012]);
    const lastClose = Math.max(...closed.map(({ at }) => at));
    figures.offlineAfterDrainClose = await presenceWithin(user, (found) => !found.online, lastClose, 1_000);
    expect((await presence(user)).lastSeen).toBeGreaterThan(lastClose - 5_000);
    await drained;
    await waitUntil(() => eventsOf(user).length > 1, { timeoutMs: 5_000, what: 'the offline event' });
    expect(shape(user)).toEqual([
      { user, online: true, connections: 1 },
      { user, online: false, connections: 0 },
    ]);
    const answer = (await cli(['presence', user, '--json'], cluster!.env)).json();
    expect(answer).toMatchObject({ user, online: false, connections: [], lastSeen: (await presence(user)).lastSeen });
  }, 30_000);

  it('is offline within 60 s after its node was SIGKILLed, announced once however many nodes sweep', async () => {
    // Two nodes left to sweep: the drained one comes back.
    await cluster!.restart(0);
    const killedAt = Date.now();
    await cluster!.kill(1);
    const took = await Promise.all(
      [users.killedOne, users.killedTwo].map((user) => presenceWithin(user, (found) => !found.online, killedAt, 60_000)),
    );
    figures.offlineAfterKillOne = took[0]!;
    figures.offlineAfterKillTwo = took[1]!;
    await waitUntil(() => eventsOf(users.killedOne).length > 1 && eventsOf(users.killedTwo).length > 1, {
      timeoutMs: 5_000,
      what: 'the offline events',
    });
    // Longer than a sweep interval: a second offline event would have come by now.
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    for (const user of [users.killedOne, users.killedTwo]) {
      expect(shape(user)).toEqual([
        { user, online: true, connections: 1 },
        { user, online: false, connections: 0 },
      ]);
      expect((await presence(user)).lastSeen).toBeGreaterThanOrEqual(killedAt);
    }
    expect(shape(users.kept)).toEqual([{ user: users.kept, online: true, connections: 1 }]);
    expect(shape(users.refused)).toEqual([]);
    expect((await cli(['presence', users.kept, '--json'], cluster!.env)).json()).toMatchObject({
      user: users.kept,
      online: true,
      connections: [{ node: 'n3', device: 'desk' }],
    });
  }, 90_000);
});
