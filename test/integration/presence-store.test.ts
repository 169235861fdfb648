/**
 * The presence store's script on the real Redis (contract in src/presence/presence-store.ts):
 * each move between online and offline is reported once, to the request that made it, whoever
 * else asks at the same time; expired entries count for nothing; lastSeen once offline.
 */
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { PresenceOperation, PresenceTransition } from '../../src/presence/presence-store.js';
import { RedisPresenceStore, presenceIndexKey } from '../../src/presence/redis-presence-store.js';
import { redisUrl, uid } from '../helpers/relay.js';

const TTL_MS = 50_000;
const opened: RedisPresenceStore[] = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((store) => store.close()));
});

function store(keyPrefix: string): RedisPresenceStore {
  const created = new RedisPresenceStore({ url: redisUrl(), keyPrefix });
  opened.push(created);
  return created;
}

const put = (user: string, connection: string, node = 'n1', device?: string): PresenceOperation => ({
  kind: 'put',
  user,
  connection,
  entry: { node, since: Date.now(), ...(device === undefined ? {} : { device }) },
});
const remove = (user: string, connection: string): PresenceOperation => ({ kind: 'remove', user, connection });
const moves = (transitions: PresenceTransition[]) => transitions.map(({ user, online, connections }) => ({ user, online, connections }));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('RedisPresenceStore', () => {
  it('reports a user online at the first entry and offline at the removal of the last, once each', async () => {
    const presence = store(`${uid('presence')}:`);
    const user = uid('user');
    expect(moves(await presence.apply([put(user, 'c1', 'n1', 'phone')], TTL_MS))).toEqual([{ user, online: true, connections: 1 }]);
    expect(await presence.apply([put(user, 'c2', 'n2'), put(user, 'c1', 'n1', 'phone')], TTL_MS)).toEqual([]);
    const [online] = await presence.read([user]);
    expect(online).toMatchObject({ user, online: true });
    expect(online!.connections.map(({ node, device }) => ({ node, device }))).toEqual([
      { node: 'n1', device: 'phone' },
      { node: 'n2', device: undefined },
    ]);
    expect(online!.lastSeen).toBeUndefined();
    expect(await presence.apply([remove(user, 'c1'), remove(user, 'c1')], TTL_MS)).toEqual([]);
    const before = Date.now();
    const offline = await presence.apply([remove(user, 'c2')], TTL_MS);
    expect(moves(offline)).toEqual([{ user, online: false, connections: 0 }]);
    const [after] = await presence.read([user]);
    expect(after).toMatchObject({ user, online: false, connections: [] });
    expect(after!.lastSeen).toBe(offline[0]!.at);
    expect(after!.lastSeen).toBeGreaterThanOrEqual(before - 1_000);
  });

  it('reports both moves, in order, when one batch opens and closes a user', async () => {
    const presence = store(`${uid('presence')}:`);
    const user = uid('user');
    expect(moves(await presence.apply([put(user, 'c1'), remove(user, 'c1'), put(user, 'c2')], TTL_MS))).toEqual([
      { user, online: true, connections: 1 },
      { user, online: false, connections: 0 },
      { user, online: true, connections: 1 },
    ]);
  });

  it('answers expired entries as gone, and one of several concurrent sweeps reports the user offline', async () => {
    const prefix = `${uid('presence')}:`;
    const nodes = [store(prefix), store(prefix), store(prefix)];
    const users = [uid('user'), uid('user')];
    await nodes[0]!.apply(
      users.map((user) => put(user, 'c1')),
      150,
    );
    await nodes[1]!.apply([put(users[1]!, 'c2')], TTL_MS);
    await sleep(300);
    const [gone, kept] = await nodes[2]!.read(users);
    expect(gone).toMatchObject({ online: false, connections: [] });
    expect(kept).toMatchObject({ online: true, connections: [{ node: 'n1' }] });
    const swept = (await Promise.all(nodes.flatMap((node) => [node.sweep(100), node.sweep(100)]))).flat();
    expect(moves(swept)).toEqual([{ user: users[0], online: false, connections: 0 }]);
    expect((await nodes[0]!.read([users[0]!]))[0]!.lastSeen).toBe(swept[0]!.at);
    expect(await nodes[0]!.sweep(100)).toEqual([]);
  });

  it('reports the offline move of expired entries before the online move of a new one, when no sweep came first', async () => {
    const presence = store(`${uid('presence')}:`);
    const user = uid('user');
    await presence.apply([put(user, 'c1')], 100);
    await sleep(250);
    expect(moves(await presence.apply([put(user, 'c2')], TTL_MS))).toEqual([
      { user, online: false, connections: 0 },
      { user, online: true, connections: 1 },
    ]);
  });

  it('reports a user offline whose entry keys are gone (a deployment that was down past their Redis TTL)', async () => {
    const prefix = `${uid('presence')}:`;
    const presence = store(prefix);
    const user = uid('user');
    await presence.apply([put(user, 'c1')], 100);
    const redis = new Redis(redisUrl());
    try {
      expect(await redis.pttl(`${prefix}{${user}}:pc`)).toBeGreaterThan(0);
      await redis.del(`${prefix}{${user}}:pc`, `${prefix}{${user}}:pe`);
      expect(await redis.zscore(presenceIndexKey(prefix), user)).not.toBeNull();
    } finally {
      redis.disconnect();
    }
    await sleep(150);
    expect(moves(await presence.sweep(100))).toEqual([{ user, online: false, connections: 0 }]);
  });

  it('keeps apart deployments with different key prefixes', async () => {
    const user = uid('user');
    const a = store(`${uid('presence')}:`);
    const b = store(`${uid('presence')}:`);
    await a.apply([put(user, 'c1')], TTL_MS);
    expect((await b.read([user]))[0]).toMatchObject({ online: false, connections: [] });
    expect(moves(await b.apply([put(user, 'c1')], TTL_MS))).toEqual([{ user, online: true, connections: 1 }]);
  });
});
