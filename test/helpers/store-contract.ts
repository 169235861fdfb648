/** The SeqStore guarantees (src/store/store.ts), run against every implementation. */
import { describe, expect, it } from 'vitest';
import type { SeqStore } from '../../src/store/store.js';
import { uid } from './relay.js';

/** Assign inputs for message ids, with a small fragment each. */
export const inputs = (ids: string[]) => ids.map((id) => ({ id, fragment: `"id":"${id}"` }));

export function storeContract(name: string, make: (limits: { maxCount: number; maxAgeMs: number }) => Promise<SeqStore>): void {
  describe(`${name} store contract`, () => {

    it('hands out gap-free seqs in input order and the same seq for a known id', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch, seq } = await store.meta(user);
      expect(seq).toBe(0);
      expect(await store.assign(user, epoch, inputs(['a', 'b', 'c']))).toEqual([1, 2, 3]);
      expect(await store.assign(user, epoch, inputs(['b', 'd', 'a']))).toEqual([2, 4, 1]);
      expect(await store.meta(user)).toMatchObject({ epoch, seq: 4, acked: 0, start: 1 });
      await store.close();
    });

    it('refuses to assign or ack in an epoch that is gone, and starts a new one from meta', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, inputs(['a']));
      await store.forget(user);
      expect(await store.assign(user, epoch, inputs(['b']))).toBeNull();
      expect(await store.ack(user, epoch, 1)).toBe(false);
      expect(await store.range(user, epoch, 1, 1)).toBeNull();
      expect(await store.peek(user)).toBeUndefined();
      const fresh = await store.meta(user);
      expect(fresh.epoch).not.toBe(epoch);
      expect(await store.assign(user, fresh.epoch, inputs(['b']))).toEqual([1]);
      await store.close();
    });

    it('keeps history above the acked mark and trims below it by count', async () => {
      const store = await make({ maxCount: 3, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, inputs(['a', 'b', 'c', 'd', 'e']));
      // Nothing acked: all five stay although the limit is three.
      expect((await store.range(user, epoch, 1, 5))!.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(await store.ack(user, epoch, 4)).toBe(true);
      const kept = (await store.range(user, epoch, 1, 5))!;
      expect(kept.map((e) => [e.seq, e.id, e.fragment])).toEqual([
        [3, 'c', '"id":"c"'],
        [4, 'd', '"id":"d"'],
        [5, 'e', '"id":"e"'],
      ]);
      expect(await store.meta(user)).toMatchObject({ acked: 4, start: 3, seq: 5 });
      // A trimmed id is forgotten: the idempotency window is the history.
      expect(await store.assign(user, epoch, inputs(['a']))).toEqual([6]);
      await store.close();
    });

    it('trims acked history by age', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 0 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, inputs(['a', 'b', 'c']));
      await new Promise((resolve) => setTimeout(resolve, 5));
      await store.ack(user, epoch, 2);
      expect((await store.range(user, epoch, 1, 3))!.map((e) => e.seq)).toEqual([3]);
      await store.close();
    });

    it('never lowers the acked mark nor raises it past the last seq', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, inputs(['a', 'b']));
      await store.ack(user, epoch, 2);
      await store.ack(user, epoch, 1);
      await store.ack(user, epoch, 50);
      expect(await store.peek(user)).toMatchObject({ acked: 2, seq: 2 });
      await store.close();
    });
    it('runs the calls made in one turn in the order they were made, for many users at once', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const [u0, u1, u2] = [uid('st'), uid('st'), uid('st')];
      const [m0, m1] = await Promise.all([store.meta(u0), store.meta(u1)]);
      const [first, other, wrongEpoch, acked, kept, again, fresh] = await Promise.all([
        store.assign(u0, m0.epoch, inputs(['a', 'b'])),
        store.assign(u1, m1.epoch, inputs(['a'])),
        store.assign(u1, 'not-the-epoch', inputs(['z'])),
        store.ack(u0, m0.epoch, 1),
        store.range(u0, m0.epoch, 1, 5),
        store.assign(u0, m0.epoch, inputs(['b', 'c'])),
        store.meta(u2),
      ]);
      expect(first).toEqual([1, 2]);
      expect(other).toEqual([1]);
      expect(wrongEpoch).toBeNull();
      expect(acked).toBe(true);
      expect(kept!.map((e) => [e.seq, e.id])).toEqual([[1, 'a'], [2, 'b']]);
      expect(again).toEqual([2, 3]);
      expect(fresh).toMatchObject({ seq: 0, acked: 0, start: 1 });
      expect(await store.peek(u0)).toMatchObject({ epoch: m0.epoch, seq: 3, acked: 1 });
      expect(await store.peek(u1)).toMatchObject({ epoch: m1.epoch, seq: 1, acked: 0 });
      // A forget followed by a meta in the same turn starts a new epoch.
      const [, after] = await Promise.all([store.forget(u1), store.meta(u1)]);
      expect(after.epoch).not.toBe(m1.epoch);
      expect(after.seq).toBe(0);
      await store.close();
    });
  });
}
