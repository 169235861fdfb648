/**
 * The node bus on the real Redis: the contract every bus keeps (test/helpers/node-bus-contract.ts),
 * then what only Redis can do to it: drop the subscriber connection, or go away altogether.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { busChannel, type BusState, type NodeBus } from '../../src/cluster/node-bus.js';
import { RedisNodeBus } from '../../src/cluster/redis-node-bus.js';
import { ErrorCode } from '../../src/errors.js';
import { collector, head, nodeBusContract, type BusTestbed } from '../helpers/node-bus-contract.js';
import { OwnRedis } from '../helpers/own-redis.js';
import { redisUrl, uid } from '../helpers/relay.js';

/** Nodes on one Redis under a key prefix of the test's own, and a plain client to look from outside. */
function testbed(url = redisUrl()): BusTestbed<RedisNodeBus> & { raw: Redis } {
  const keyPrefix = `${uid('test')}:`;
  const raw = new Redis(url);
  // Its reconnect attempts while a test's own Redis is stopped are expected.
  raw.on('error', () => undefined);
  const nodes: RedisNodeBus[] = [];
  return {
    raw,
    node: async (nodeId) => {
      const bus = new RedisNodeBus({ url, keyPrefix, nodeId });
      nodes.push(bus);
      await bus.connect();
      return bus;
    },
    publishRaw: async (user, payload) => {
      await raw.publish(busChannel(keyPrefix, user), payload);
    },
    subscribers: async (user) => {
      const reply = (await raw.call('PUBSUB', 'NUMSUB', busChannel(keyPrefix, user))) as [string, number];
      return Number(reply[1]);
    },
    user: () => uid('bus'),
    close: async () => {
      await Promise.all(nodes.map((node) => node.close()));
      await raw.quit();
    },
  };
}

/** Resolves when `bus` next reports `wanted` (or at once if it is already there). */
function reaches(bus: NodeBus, wanted: BusState): Promise<void> {
  if (bus.state === wanted) return Promise.resolve();
  return new Promise((resolve) => {
    const stop = bus.onState((state) => {
      if (state !== wanted) return;
      stop();
      resolve();
    });
  });
}

nodeBusContract('redis', async () => testbed());

describe('RedisNodeBus reconnects', () => {
  it('resubscribes after its subscriber connection is killed, reports the outage, and delivers what is published after', async () => {
    const bed = testbed();
    const [a, b] = [await bed.node('node-a'), await bed.node('node-b')];
    const [user, other] = [bed.user(), bed.user()];
    const oldId = Number(await b.subscriber.client('ID'));
    const atB = collector();
    const atOther = collector();
    await b.subscribe(user, atB.handler);
    await b.subscribe(other, atOther.handler);
    const states: BusState[] = [];
    b.onState((state) => states.push(state));
    const back = new Promise<void>((resolve) => b.onState((state) => state === 'connected' && resolve()));

    expect(await bed.raw.client('KILL', 'ID', String(oldId))).toBe(1);
    await back;

    expect(states).toEqual(['disconnected', 'connected']);
    expect(Number(await b.subscriber.client('ID'))).not.toBe(oldId);
    expect([await bed.subscribers(user), await bed.subscribers(other)]).toEqual([1, 1]);
    await a.publish(user, head(1));
    await a.publish(other, head(2));
    await atB.until(1);
    await atOther.until(1);
    expect([atB.messages, atOther.messages]).toEqual([[{ ...head(1), from: 'node-a' }], [{ ...head(2), from: 'node-a' }]]);
    await bed.close();
  });

  describe('while Redis is down', () => {
    const redis = new OwnRedis();
    beforeAll(async () => {
      await redis.start();
    });
    afterAll(async () => {
      await redis.destroy();
    });

    it('refuses to publish, takes subscriptions, and makes them once Redis is back', async () => {
      const bed = testbed(redis.url);
      const [a, b] = [await bed.node('node-a'), await bed.node('node-b')];
      const [before, during, left] = [bed.user(), bed.user(), bed.user()];
      const atBefore = collector();
      const atDuring = collector();
      await b.subscribe(before, atBefore.handler);
      const leaving = await b.subscribe(left, collector().handler);
      const states: BusState[] = [];
      b.onState((state) => states.push(state));

      const down = Promise.all([reaches(a, 'disconnected'), reaches(b, 'disconnected')]);
      await redis.stop();
      await down;
      await b.subscribe(during, atDuring.handler);
      await leaving.close();
      await expect(b.publish(before, head(1))).rejects.toMatchObject({ code: ErrorCode.storeUnavailable });

      const up = Promise.all([reaches(a, 'connected'), reaches(b, 'connected')]);
      await redis.start();
      await up;
      expect(states).toEqual(['disconnected', 'connected']);
      expect([await bed.subscribers(before), await bed.subscribers(during), await bed.subscribers(left)]).toEqual([1, 1, 0]);
      await a.publish(before, head(2));
      await a.publish(during, head(3));
      await atBefore.until(1);
      await atDuring.until(1);
      expect([atBefore.messages, atDuring.messages]).toEqual([[{ ...head(2), from: 'node-a' }], [{ ...head(3), from: 'node-a' }]]);
      await bed.close();
    });
  });
});
