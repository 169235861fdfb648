/**
 * The Redis store's script (src/store/lua/, joined into BATCH) called directly, one operation or
 * a few per call, against the real Redis: what each operation writes, and what it answers.
 */
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BATCH } from '../../src/store/lua/scripts.generated.js';
import { createRedisClient } from '../../src/store/redis-store.js';
import { redisUrl, uid } from '../helpers/relay.js';

/** One operation as the script reads it: the user whose keys it takes, its kind and arguments. */
type Op = [user: string, ...args: (string | number)[]];

const NOW = 1_000_000;
let redis: Redis;
let prefix = '';

beforeAll(async () => {
  redis = createRedisClient(redisUrl());
  await redis.connect();
});

afterAll(async () => {
  await redis.quit();
});

afterEach(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
});

function keysOf(user: string): { meta: string; ids: string; hist: string; dead: string } {
  const base = `${prefix}{${user}}`;
  return { meta: `${base}:m`, ids: `${base}:i`, hist: `${base}:h`, dead: `${base}:d` };
}

/** One call of the script with these operations, each getting its user's four keys. */
async function batch(ops: Op[], limits: { maxCount?: number; maxAgeMs?: number; now?: number } = {}): Promise<unknown[]> {
  const keys = ops.flatMap(([user]) => Object.values(keysOf(user)));
  const args = ops.flatMap(([, ...rest]) => rest);
  const reply = await redis.eval(
    BATCH,
    keys.length,
    ...keys,
    limits.now ?? NOW,
    limits.maxCount ?? 100,
    limits.maxAgeMs ?? 60_000,
    ...args,
  );
  return reply as unknown[];
}

/** One operation alone; its reply. */
async function one(op: Op, limits?: { maxCount?: number; maxAgeMs?: number; now?: number }): Promise<unknown> {
  const [reply] = await batch([op], limits);
  return reply;
}

/** A user with a numbering at `epoch` and these ids numbered 1..n. */
async function userWith(epoch: string, ids: string[]): Promise<string> {
  const user = uid('ls');
  await one([user, 'm', epoch]);
  if (ids.length > 0) await one([user, 'a', epoch, 0, ids.length, ...ids.flatMap((id) => [id, `f-${id}`])]);
  return user;
}

/** Which of the user's four keys exist, by name. */
async function existing(user: string): Promise<string[]> {
  const keys = keysOf(user);
  const names: string[] = [];
  for (const [name, key] of Object.entries(keys)) if ((await redis.exists(key)) === 1) names.push(name);
  return names;
}

describe('redis store script', () => {
  beforeAll(() => {
    prefix = `${uid('lua')}:`;
  });

  describe('meta', () => {
    it('starts a numbering once, and deletes keys left from an older one', async () => {
      const user = uid('ls');
      const { ids, hist, dead } = keysOf(user);
      await redis.hset(ids, 'old', 7);
      await redis.hset(hist, 7, `${NOW}\nold\nf`);
      await redis.hset(dead, 'old', 7);
      expect(await one([user, 'm', 'e1'])).toEqual(['e1', '0', '0', '1']);
      expect(await existing(user)).toEqual(['meta']);
      expect(await one([user, 'm', 'e2'])).toEqual(['e1', '0', '0', '1']);
    });
  });

  describe('assign', () => {
    it('numbers new ids in order, answers known ids again, and writes history', async () => {
      const user = await userWith('e1', []);
      expect(await one([user, 'a', 'e1', 0, 3, 'a', 'fa', 'b', 'fb', 'a', 'fa'])).toEqual([1, 2, 1]);
      expect(await one([user, 'a', 'e1', 2, 2, 'c', 'fc', 'b', 'fb'])).toEqual([3, 2]);
      expect(await redis.hgetall(keysOf(user).hist)).toEqual({ 1: `${NOW}\na\nfa`, 2: `${NOW}\nb\nfb`, 3: `${NOW}\nc\nfc` });
      expect(await redis.hgetall(keysOf(user).ids)).toEqual({ a: '1', b: '2', c: '3' });
      expect(await redis.hget(keysOf(user).meta, 'seq')).toBe('3');
    });

    it('answers 0 for a gone epoch and changes nothing', async () => {
      const user = await userWith('e1', ['a']);
      expect(await one([user, 'a', 'e0', 0, 1, 'b', 'fb'])).toBe(0);
      expect(await redis.hget(keysOf(user).meta, 'seq')).toBe('1');
    });

    it('drops every key of the user when seen is above its seq', async () => {
      const user = await userWith('e1', ['a', 'b']);
      await one([user, 'd', 'e1', 1]);
      expect(await existing(user)).toEqual(['meta', 'ids', 'hist', 'dead']);
      expect(await one([user, 'a', 'e1', 3, 1, 'c', 'fc'])).toBe(0);
      expect(await existing(user)).toEqual([]);
    });

    it('answers an id with an intent by its intent seq, negated, and numbers nothing for it, even once trimmed', async () => {
      const user = await userWith('e1', ['a', 'b', 'c']);
      expect(await one([user, 'd', 'e1', 1])).toBe(1);
      expect(await one([user, 'k', 'e1', 3], { maxCount: 1 })).toBe(1);
      expect(await redis.hexists(keysOf(user).ids, 'a')).toBe(0);
      expect(await one([user, 'a', 'e1', 3, 2, 'a', 'fa', 'd', 'fd'], { maxCount: 1 })).toEqual([-1, 4]);
      expect(await redis.hget(keysOf(user).meta, 'seq')).toBe('4');
    });
  });

  describe('ack', () => {
    it('raises the mark, never lowers it, and trims history and ids but not intents', async () => {
      const user = await userWith('e1', ['a', 'b', 'c']);
      await one([user, 'd', 'e1', 1]);
      expect(await one([user, 'k', 'e1', 2], { maxCount: 1 })).toBe(1);
      expect(await one([user, 'k', 'e1', 1], { maxCount: 1 })).toBe(1);
      expect(await redis.hmget(keysOf(user).meta, 'acked', 'start')).toEqual(['2', '3']);
      expect(await redis.hkeys(keysOf(user).hist)).toEqual(['3']);
      expect(await redis.hkeys(keysOf(user).ids)).toEqual(['c']);
      expect(await redis.hgetall(keysOf(user).dead)).toEqual({ a: '1' });
    });

    it('trims by age', async () => {
      const user = await userWith('e1', ['a', 'b']);
      expect(await one([user, 'k', 'e1', 2], { maxAgeMs: 10, now: NOW + 11 })).toBe(1);
      expect(await redis.hlen(keysOf(user).hist)).toBe(0);
      expect(await redis.hget(keysOf(user).meta, 'start')).toBe('3');
    });

    it('drops every key of the user on an ack past its seq', async () => {
      const user = await userWith('e1', ['a', 'b']);
      expect(await one([user, 'k', 'e1', 3])).toBe(0);
      expect(await existing(user)).toEqual([]);
    });

    it('answers 0 for a gone epoch and changes nothing', async () => {
      const user = await userWith('e1', ['a']);
      expect(await one([user, 'k', 'e0', 1])).toBe(0);
      expect(await redis.hget(keysOf(user).meta, 'acked')).toBe('0');
    });
  });

  describe('range', () => {
    it('answers the kept entries in [from, to] as seq, raw pairs', async () => {
      const user = await userWith('e1', ['a', 'b', 'c']);
      await one([user, 'k', 'e1', 1], { maxCount: 1 });
      expect(await one([user, 'r', 'e1', 1, 2])).toEqual([2, `${NOW}\nb\nf-b`]);
      expect(await one([user, 'r', 'e1', 3, 2])).toEqual([]);
      expect(await one([user, 'r', 'e0', 1, 2])).toBe(0);
    });

    it('drops every key of the user on a range past its seq', async () => {
      const user = await userWith('e1', ['a']);
      expect(await one([user, 'r', 'e1', 1, 2])).toBe(0);
      expect(await existing(user)).toEqual([]);
    });
  });

  describe('discard', () => {
    it('drops the numbering of the epoch it names only, and answers 0 when already gone', async () => {
      const user = await userWith('e1', ['a']);
      expect(await one([user, 'x', 'e0'])).toBe(0);
      expect(await existing(user)).toEqual(['meta', 'ids', 'hist']);
      expect(await one([user, 'x', 'e1'])).toBe(1);
      expect(await existing(user)).toEqual([]);
      expect(await one([user, 'x', 'e1'])).toBe(0);
    });
  });

  describe('deadLetter', () => {
    it('records an intent by message id, once, and answers -1 for a seq history no longer holds', async () => {
      const user = await userWith('e1', ['a', 'b', 'c']);
      expect(await one([user, 'd', 'e1', 2])).toBe(1);
      expect(await one([user, 'd', 'e1', 2])).toBe(1);
      expect(await redis.hgetall(keysOf(user).dead)).toEqual({ b: '2' });
      await one([user, 'k', 'e1', 1], { maxCount: 1 });
      expect(await one([user, 'd', 'e1', 1])).toBe(-1);
      expect(await one([user, 'd', 'e1', 0])).toBe(-1);
      expect(await one([user, 'd', 'e0', 2])).toBe(0);
    });

    it('drops every key of the user for a seq past its seq', async () => {
      const user = await userWith('e1', ['a']);
      expect(await one([user, 'd', 'e1', 2])).toBe(0);
      expect(await existing(user)).toEqual([]);
    });
  });

  describe('deadLettered', () => {
    it('clears the intents of the named seqs only, and nothing for a gone epoch', async () => {
      const user = await userWith('e1', ['a', 'b', 'c']);
      await batch([
        [user, 'd', 'e1', 1],
        [user, 'd', 'e1', 2],
        [user, 'd', 'e1', 3],
      ]);
      expect(await one([user, 'c', 'e0', 1, 1])).toBe(0);
      expect(await one([user, 'c', 'e1', 3, 3, 1, 99])).toBe(2);
      expect(await redis.hgetall(keysOf(user).dead)).toEqual({ b: '2' });
      expect(await one([user, 'c', 'e1', 0])).toBe(0);
    });
  });

  describe('forget', () => {
    it('deletes every key of the user, whatever its epoch', async () => {
      const user = await userWith('e1', ['a']);
      await one([user, 'd', 'e1', 1]);
      expect(await one([user, 'f'])).toBe(1);
      expect(await existing(user)).toEqual([]);
    });
  });

  describe('dispatch', () => {
    it('runs a batch in order, for several users, one reply each', async () => {
      const [u1, u2] = [uid('ls'), uid('ls')];
      const replies = await batch([
        [u1, 'm', 'e1'],
        [u2, 'm', 'e2'],
        [u1, 'a', 'e1', 0, 1, 'a', 'fa'],
        [u1, 'd', 'e1', 1],
        [u1, 'k', 'e1', 1],
        [u1, 'a', 'e1', 1, 2, 'a', 'fa', 'b', 'fb'],
        [u2, 'r', 'e2', 1, 0],
      ]);
      expect(replies).toEqual([['e1', '0', '0', '1'], ['e2', '0', '0', '1'], [1], 1, 1, [-1, 2], []]);
    });

    it('fails a failing operation alone, with its error as its reply', async () => {
      const [good, broken] = [await userWith('e1', ['a']), await userWith('e1', ['a'])];
      await redis.del(keysOf(broken).dead);
      await redis.set(keysOf(broken).dead, 'not a hash');
      const replies = await batch([
        [good, 'a', 'e1', 1, 1, 'b', 'fb'],
        [broken, 'a', 'e1', 1, 1, 'b', 'fb'],
        [good, 'a', 'e1', 2, 1, 'c', 'fc'],
      ]);
      expect(replies[0]).toEqual([2]);
      expect(replies[1]).toBeInstanceOf(Error);
      expect(String(replies[1])).toContain('WRONGTYPE');
      expect(replies[2]).toEqual([3]);
    });

    it('fails the whole call on an unknown operation, and runs nothing after it', async () => {
      const user = uid('ls');
      await expect(
        batch([
          [user, '?'],
          [user, 'm', 'e1'],
        ]),
      ).rejects.toThrow('unknown store operation ?');
      expect(await existing(user)).toEqual([]);
    });
  });
});
