import { describe, expect, it } from 'vitest';
import { ErrorCode, isRelayError } from '../../src/errors.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { inputs, numbered, storeContract } from '../helpers/store-contract.js';
import { redisUrl, uid } from '../helpers/relay.js';

storeContract('redis', async (limits) => {
  const store = new RedisStore({ url: redisUrl(), keyPrefix: `${uid('test')}:`, limits });
  await store.connect();
  return store;
});

describe('redis store batching', () => {
  it('sends the operations of one turn as one script call per maxBatchOps, each with its own reply', async () => {
    const store = new RedisStore({
      url: redisUrl(),
      keyPrefix: `${uid('test')}:`,
      limits: { maxCount: 100, maxAgeMs: 60_000 },
      maxBatchOps: 4,
    });
    await store.connect();
    const users = Array.from({ length: 10 }, () => uid('sb'));
    const metas = await Promise.all(users.map((user) => store.meta(user)));
    expect(store.stats).toEqual({ calls: 3, operations: 10 });
    const seqs = await Promise.all(
      users.map((user, i) => store.assign(user, metas[i]!.epoch, 0, inputs(Array.from({ length: i + 1 }, (_, j) => `m${j}`)))),
    );
    expect(seqs).toEqual(users.map((_, i) => numbered(...Array.from({ length: i + 1 }, (_, j) => j + 1))));
    expect(store.stats).toEqual({ calls: 6, operations: 20 });
    // Operations awaited one by one each go alone.
    await store.ack(users[0]!, metas[0]!.epoch, 1);
    await store.ack(users[1]!, metas[1]!.epoch, 2);
    expect(store.stats).toEqual({ calls: 8, operations: 22 });
    expect(await store.peek(users[1]!)).toMatchObject({ seq: 2, acked: 2 });
    await store.close();
  });

  it('cuts a batch whose arguments would pass 20,000, and sends a bigger operation alone', async () => {
    const store = new RedisStore({ url: redisUrl(), keyPrefix: `${uid('test')}:`, limits: { maxCount: 20_000, maxAgeMs: 60_000 } });
    await store.connect();
    const users = [uid('sb'), uid('sb'), uid('sb'), uid('sb')];
    const metas = await Promise.all(users.map((user) => store.meta(user)));
    const sizes = [4_000, 4_000, 4_000, 11_000];
    const before = store.stats.calls;
    const seqs = await Promise.all(
      users.map((user, i) => store.assign(user, metas[i]!.epoch, 0, inputs(Array.from({ length: sizes[i]! }, (_, j) => `m${j}`)))),
    );
    // 8,008 + 8,008 args (4 keys, 4 arguments, 2 per input), then 8,008 (would pass 20,000), then 22,008 alone.
    expect(store.stats.calls - before).toBe(3);
    expect(seqs.map((s) => [s!.length, s![0]!.seq, s!.at(-1)!.seq])).toEqual(sizes.map((n) => [n, 1, n]));
    await store.close();
  });

  it('runs each script call, not each operation, through the guard, and fails every operation of a call it refuses', async () => {
    const store = new RedisStore({ url: redisUrl(), keyPrefix: `${uid('test')}:`, limits: { maxCount: 100, maxAgeMs: 60_000 } });
    await store.connect();
    let calls = 0;
    let refuse = false;
    store.guardWith(async (call) => {
      calls += 1;
      if (refuse) throw new Error('breaker open');
      return call();
    });
    const users = Array.from({ length: 5 }, () => uid('sb'));
    await Promise.all(users.map((user) => store.meta(user)));
    expect(calls).toBe(1);
    refuse = true;
    const outcomes = await Promise.allSettled(users.map((user) => store.meta(user)));
    expect(calls).toBe(2);
    expect(outcomes.map((o) => (o.status === 'rejected' ? (o.reason as Error).message : 'ok'))).toEqual(users.map(() => 'breaker open'));
    // The probe's round trip goes around the guard.
    await store.ping();
    expect(calls).toBe(2);
    await store.close();
  });

  it('fails only the operation whose keys are broken, not the others of its batch', async () => {
    const prefix = `${uid('test')}:`;
    const store = new RedisStore({ url: redisUrl(), keyPrefix: prefix, limits: { maxCount: 100, maxAgeMs: 60_000 } });
    await store.connect();
    const [good, broken, other] = [uid('sb'), uid('sb'), uid('sb')];
    await store.redis.set(`${prefix}{${broken}}:m`, 'not a hash');
    const before = store.stats.calls;
    const [first, second, third] = await Promise.allSettled([store.meta(good), store.meta(broken), store.meta(other)]);
    expect(store.stats.calls - before).toBe(1);
    expect(first).toMatchObject({ status: 'fulfilled', value: { seq: 0 } });
    expect(second.status).toBe('rejected');
    expect(String((second as PromiseRejectedResult).reason)).toContain('WRONGTYPE');
    expect(third).toMatchObject({ status: 'fulfilled', value: { seq: 0 } });
    await store.redis.del(`${prefix}{${broken}}:m`);
    await store.close();
  });

  it('sends what is queued, and waits for what is in flight, before it closes', async () => {
    const store = new RedisStore({ url: redisUrl(), keyPrefix: `${uid('test')}:`, limits: { maxCount: 100, maxAgeMs: 60_000 } });
    await store.connect();
    const user = uid('sb');
    const { epoch } = await store.meta(user);
    const inFlight = store.assign(user, epoch, 0, inputs(['a']));
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.stats.calls).toBe(2);
    const queued = store.assign(user, epoch, 0, inputs(['b']));
    await store.close();
    expect(await inFlight).toEqual(numbered(1));
    expect(await queued).toEqual(numbered(2));
  });

  it('fails an operation whose reply is short, long or malformed instead of answering part of it', async () => {
    const store = new RedisStore({ url: redisUrl(), keyPrefix: `${uid('test')}:`, limits: { maxCount: 100, maxAgeMs: 60_000 } });
    await store.connect();
    const user = uid('sb');
    const { epoch } = await store.meta(user);
    // The guard stands in for Redis here: each call gets the replies queued for it.
    const replies: unknown[][] = [];
    store.guardWith(async <T>() => replies.shift() as T);
    const codeOf = async (call: Promise<unknown>) =>
      call.then(
        () => 'resolved',
        (error: unknown) => (isRelayError(error, ErrorCode.storeReply) ? error.code : String(error)),
      );
    const two = inputs(['a', 'b']);
    replies.push([[1]], [[1, 2, 3]], [[1, 0]], [['1', 2]], [7], [[1, 'raw']], [5]);
    expect(await codeOf(store.assign(user, epoch, 0, two))).toBe('RELAY_ERR_STORE_REPLY');
    expect(await codeOf(store.assign(user, epoch, 0, two))).toBe('RELAY_ERR_STORE_REPLY');
    expect(await codeOf(store.assign(user, epoch, 0, two))).toBe('RELAY_ERR_STORE_REPLY');
    expect(await codeOf(store.assign(user, epoch, 0, two))).toBe('RELAY_ERR_STORE_REPLY');
    expect(await codeOf(store.ack(user, epoch, 1))).toBe('RELAY_ERR_STORE_REPLY');
    expect(await codeOf(store.range(user, epoch, 1, 1))).toBe('RELAY_ERR_STORE_REPLY');
    expect(await codeOf(store.deadLetter(user, epoch, 1))).toBe('RELAY_ERR_STORE_REPLY');
    // A well-formed reply still decodes, intents included.
    replies.push([[1, -2]]);
    expect(await store.assign(user, epoch, 0, two)).toEqual([
      { seq: 1, deadLetter: false },
      { seq: 2, deadLetter: true },
    ]);
    expect(replies).toEqual([]);
    await store.close();
  });
});
