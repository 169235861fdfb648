/**
 * Several relay nodes in this process, on the real RabbitMQ and Redis, sharing one key prefix:
 * a user's connections on different nodes each get every message live with the same seqs; an
 * ack or a dead-letter request on a node that does not own the user's queue takes effect on the
 * one that does; a node that gives its consumer up hands the user over to one that still has
 * connections; and two nodes that start the same user at once never number a message twice.
 * (Processes killed and restarted under load: test/chaos/relay-cluster*.test.ts.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import type { RedisNodeBus } from '../../src/cluster/redis-node-bus.js';
import { loadConfig } from '../../src/config.js';
import type { ServerFrame } from '../../src/protocol/frames.js';
import { waitUntil } from '../../src/wait-until.js';
import { cli } from '../helpers/ops-cli.js';
import { RawClient, msgs } from '../helpers/raw-client.js';
import { queueCounts, startTestRelay, testEnv, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';

type Msg = Extract<ServerFrame, { type: 'msg' }>;

const opened: { close(): unknown }[] = [];
const relays: TestRelay[] = [];
let producer: Producer | undefined;

afterEach(async () => {
  for (const client of opened.splice(0)) client.close();
  await Promise.all(relays.splice(0).map((relay) => relay.stop()));
  await producer?.close();
  producer = undefined;
});

/** `count` relay nodes sharing one Redis key prefix (one cluster), each with its own NODE_ID. */
async function cluster(count: number, overrides: Record<string, string> = {}): Promise<TestRelay[]> {
  const env = testEnv({ STREAM_LINGER_MS: '0', CLUSTER_HEARTBEAT_MS: '200', ...overrides });
  const nodes: TestRelay[] = [];
  for (let i = 1; i <= count; i += 1) {
    const node = await startTestRelay(loadConfig({ ...env, NODE_ID: `n${i}` }));
    relays.push(node);
    nodes.push(node);
  }
  producer = testProducer(nodes[0]!.config);
  return nodes;
}

async function connect(node: TestRelay, user: string, extra: Record<string, unknown> = {}): Promise<RawClient> {
  const client = await RawClient.connect(node.url);
  opened.push(client);
  client.send({ type: 'hello', token: token(user), ...extra });
  await client.next('welcome');
  return client;
}

/** Connects `user` on `node` and makes that node the owner: its consumer is active once it delivered a first message. */
async function connectOwner(node: TestRelay, user: string): Promise<RawClient> {
  const owner = await connect(node, user);
  await publish(user, 1);
  await received(owner, 1, 'the owner got the first message');
  return owner;
}

async function received(client: RawClient, count: number, what: string): Promise<Msg[]> {
  await waitUntil(() => msgs(client.frames).length >= count, { timeoutMs: 15_000, what });
  return msgs(client.frames);
}

async function publish(user: string, count: number, from = 0): Promise<string[]> {
  const ids: string[] = [];
  for (let i = from; i < from + count; i += 1) ids.push((await producer!.publish(user, { i })).messageId);
  return ids;
}

/** Ready messages of the user's queue once every consumer of it is gone (unacked ones come back as ready). */
async function readyAfterRelease(user: string): Promise<number> {
  await waitUntil(async () => (await queueCounts(user)).consumers === 0, { timeoutMs: 15_000, what: 'consumers released' });
  return (await queueCounts(user)).ready;
}

describe('a user on several nodes', () => {
  it('gives a connection on each node every message, live, with the same seqs', async () => {
    const [a, b] = await cluster(2);
    const user = uid('cl');
    const phone = await connect(a!, user);
    const laptop = await connect(b!, user);
    const ids = await publish(user, 20);
    const onA = await received(phone, 20, 'the phone got 20');
    const onB = await received(laptop, 20, 'the laptop got 20');
    expect(onA.map((m) => [m.seq, m.id])).toEqual(ids.map((id, i) => [i + 1, id]));
    expect(onB.map((m) => [m.seq, m.id])).toEqual(onA.map((m) => [m.seq, m.id]));
    expect(onB.every((m) => !m.redelivered)).toBe(true);
  });

  it('acks RabbitMQ for messages acked only by a connection on the node that does not own the queue', async () => {
    const [a, b] = await cluster(2);
    const user = uid('cl');
    const owner = await connectOwner(a!, user);
    // a's consumer is now the active one; the laptop on b gets the rest through the bus.
    const laptop = await connect(b!, user);
    await publish(user, 9, 1);
    const got = await received(laptop, 10, 'the laptop got all 10');
    laptop.send({ type: 'ack', seq: got[9]!.seq });
    // The owner's connection never acks: only the forwarded ack can settle the messages.
    await waitUntil(() => a!.relay.registry.get(user)?.inflightCount === 0, { timeoutMs: 10_000, what: 'the owner acked RabbitMQ' });
    owner.close();
    laptop.close();
    expect(await readyAfterRelease(user)).toBe(0);
  });

  it('dead-letters on the owner a message a client on another node refused, and acks the rest', async () => {
    const [a, b] = await cluster(2);
    const user = uid('cl');
    const owner = await connectOwner(a!, user);
    const deadLettered: string[] = [];
    a!.relay.events.on('dead-lettered', (reason) => deadLettered.push(reason));
    const laptop = await connect(b!, user);
    await publish(user, 4, 1);
    const got = await received(laptop, 5, 'the laptop got 5');
    laptop.send({ type: 'nack', seq: 3, requeue: false });
    laptop.send({ type: 'ack', seq: got[4]!.seq });
    await waitUntil(() => deadLettered.length === 1 && a!.relay.registry.get(user)?.inflightCount === 0, {
      timeoutMs: 10_000,
      what: 'the owner rejected seq 3 and acked the others',
    });
    expect(deadLettered).toEqual(['client-nack']);
    owner.close();
    laptop.close();
    expect(await readyAfterRelease(user)).toBe(0);
  });

  it('hands the user over when the owner lets go, and the other node goes on from where it was', async () => {
    const [a, b] = await cluster(2);
    const user = uid('cl');
    const owner = await connectOwner(a!, user);
    const laptop = await connect(b!, user);
    await publish(user, 5, 1);
    const before = await received(laptop, 6, 'the laptop got 6');
    laptop.send({ type: 'ack', seq: 4 });
    await waitUntil(() => (a!.relay.registry.get(user)?.ackedMark ?? 0) >= 4, { timeoutMs: 5_000, what: 'the owner learned the ack' });
    // The owner's last connection leaves: its consumer goes (linger 0), b's becomes active.
    owner.close();
    await waitUntil(() => a!.relay.registry.get(user) === undefined, { timeoutMs: 10_000, what: 'the owner released the user' });
    const ids = await publish(user, 4, 6);
    const after = await received(laptop, 10, 'the laptop got the next 4 from its own node');
    expect(after.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(after.slice(6).map((m) => m.id)).toEqual(ids);
    expect(before.map((m) => m.id)).toEqual(after.slice(0, 6).map((m) => m.id));
    laptop.send({ type: 'ack', seq: 10 });
    await waitUntil(() => b!.relay.registry.get(user)?.inflightCount === 0, { timeoutMs: 10_000, what: 'b acked RabbitMQ' });
    laptop.close();
    expect(await readyAfterRelease(user)).toBe(0);
  });

  it('never numbers a message twice or skips a seq when nodes start the same user at the same moment', async () => {
    const nodes = await cluster(3);
    for (let round = 0; round < 8; round += 1) {
      const user = uid('race');
      const ids = await publish(user, 10);
      // Every node starts the user's stream at once, each with a consumer on the queue.
      const clients = await Promise.all(nodes.map((node) => connect(node, user)));
      const more = await publish(user, 10, 10);
      const all = [...ids, ...more];
      for (const client of clients) {
        const got = await received(client, 20, `round ${round}: every node's client got 20`);
        expect(got.map((m) => m.seq)).toEqual(all.map((_, i) => i + 1));
        expect(got.map((m) => m.id)).toEqual(all);
      }
      clients[round % 3]!.send({ type: 'ack', seq: 20 });
      await waitUntil(() => nodes.every((node) => (node.relay.registry.get(user)?.inflightCount ?? 0) === 0), {
        timeoutMs: 10_000,
        what: `round ${round}: RabbitMQ acked`,
      });
      for (const client of clients) client.close();
      expect(await readyAfterRelease(user)).toBe(0);
    }
  });

  it('shows in `inbox-relay inspect` which node owns the user and which nodes wait to take over', async () => {
    const [a, b] = await cluster(2);
    const user = uid('cl');
    await connectOwner(a!, user);
    await connect(b!, user);
    // The management API URL is derived from RABBITMQ_URL (port 15672, same credentials).
    const env = { ...testEnv(), REDIS_KEY_PREFIX: a!.config.redisKeyPrefix };
    // The management API lists consumers from its statistics, refreshed every 5 s.
    const inspected = async () => {
      const run = await cli(['inspect', user, '--json'], env);
      expect(run.code, run.stderr).toBe(0);
      return run.json<{ queue: { nodes: unknown[] | null } }>();
    };
    await expect.poll(async () => (await inspected()).queue.nodes?.length, { timeout: 15_000, interval: 500 }).toBe(2);
    expect(await inspected()).toMatchObject({
      queue: {
        owner: 'n1',
        nodes: [
          { node: 'n1', active: true },
          { node: 'n2', active: false },
        ],
      },
    });
    const text = await cli(['inspect', user], env);
    expect(text.stdout).toContain('owner:     n1');
    expect(text.stdout).toContain('nodes:     n1 (active), n2 (waiting)');
  });

  it('says so in readiness and status frames while its link to the other nodes is down, and delivers from history meanwhile', async () => {
    const [a, b] = await cluster(2);
    const user = uid('cl');
    await connectOwner(a!, user);
    const laptop = await connect(b!, user);
    await received(laptop, 1, 'the laptop got the first message');
    const bus = b!.relay.bus as RedisNodeBus;
    // Both bus connections close and stay closed (ioredis does not reconnect after disconnect()).
    bus.publisher.disconnect();
    bus.subscriber.disconnect();
    const status = await laptop.next('status');
    expect(status).toMatchObject({ state: 'degraded', reason: 'node bus unavailable' });
    const ready = await fetch(`http://127.0.0.1:${b!.relay.adminPort}/readyz`);
    expect([ready.status, await ready.text()]).toEqual([503, 'not ready: node bus unavailable\n']);
    // Messages still reach the laptop: its node reads the head from the store every heartbeat.
    await publish(user, 3, 1);
    expect((await received(laptop, 4, 'the laptop got 4 from history')).map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    await Promise.all([bus.publisher.connect(), bus.subscriber.connect()]);
    expect(await laptop.next('status')).toMatchObject({ state: 'ok' });
    expect((await fetch(`http://127.0.0.1:${b!.relay.adminPort}/readyz`)).status).toBe(200);
  });
});
