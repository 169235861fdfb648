/** The SeqStore guarantees (src/store/store.ts), run against every implementation. */
import { describe, expect, it } from 'vitest';
import type { Assigned, SeqStore } from '../../src/store/store.js';
import { uid } from './relay.js';

/** Assign inputs for message ids, with a small fragment each. */
export const inputs = (ids: string[]) => ids.map((id) => ({ id, fragment: `"id":"${id}"` }));

/** What assign answers for messages numbered these seqs (no dead-letter intent). */
export const numbered = (...seqs: number[]): Assigned[] => seqs.map((seq) => ({ seq, deadLetter: false }));

/** What assign answers for a message with a dead-letter intent at `seq`. */
export const intent = (seq: number): Assigned => ({ seq, deadLetter: true });

export function storeContract(name: string, make: (limits: { maxCount: number; maxAgeMs: number }) => Promise<SeqStore>): void {
  describe(`${name} store contract`, () => {
    it('hands out gap-free seqs in input order and the same seq for a known id', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch, seq } = await store.meta(user);
      expect(seq).toBe(0);
      expect(await store.assign(user, epoch, 0, inputs(['a', 'b', 'c']))).toEqual(numbered(1, 2, 3));
      expect(await store.assign(user, epoch, 3, inputs(['b', 'd', 'a']))).toEqual(numbered(2, 4, 1));
      expect(await store.assign(user, epoch, 4, [])).toEqual([]);
      expect(await store.meta(user)).toMatchObject({ epoch, seq: 4, acked: 0, start: 1 });
      await store.close();
    });

    it('refuses every call in an epoch that is gone, and starts a new one from meta', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a']));
      await store.forget(user);
      expect(await store.assign(user, epoch, 0, inputs(['b']))).toBeNull();
      expect(await store.ack(user, epoch, 1)).toBe(false);
      expect(await store.range(user, epoch, 1, 1)).toBeNull();
      expect(await store.deadLetter(user, epoch, 1)).toBeNull();
      await store.deadLettered(user, epoch, [1]);
      await store.discard(user, epoch);
      expect(await store.peek(user)).toBeUndefined();
      const fresh = await store.meta(user);
      expect(fresh.epoch).not.toBe(epoch);
      expect(await store.assign(user, fresh.epoch, 0, inputs(['b']))).toEqual(numbered(1));
      await store.close();
    });

    it('keeps history above the acked mark and trims below it by count', async () => {
      const store = await make({ maxCount: 3, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a', 'b', 'c', 'd', 'e']));
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
      expect(await store.assign(user, epoch, 5, inputs(['a']))).toEqual(numbered(6));
      await store.close();
    });

    it('trims acked history by age', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 0 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a', 'b', 'c']));
      await new Promise((resolve) => setTimeout(resolve, 5));
      await store.ack(user, epoch, 2);
      expect((await store.range(user, epoch, 1, 3))!.map((e) => e.seq)).toEqual([3]);
      await store.close();
    });

    it('never lowers the acked mark', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a', 'b']));
      expect(await store.ack(user, epoch, 2)).toBe(true);
      expect(await store.ack(user, epoch, 1)).toBe(true);
      expect(await store.peek(user)).toMatchObject({ acked: 2, seq: 2 });
      await store.close();
    });

    it('drops the numbering when assign is told of more seqs than it holds (it went back in time)', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a', 'b', 'c']));
      // Seeing exactly the store's seq is no rollback.
      expect(await store.assign(user, epoch, 3, inputs(['d']))).toEqual(numbered(4));
      expect(await store.assign(user, epoch, 6, inputs(['e']))).toBeNull();
      expect(await store.peek(user)).toBeUndefined();
      expect(await store.ack(user, epoch, 1)).toBe(false);
      const fresh = await store.meta(user);
      expect(fresh).toMatchObject({ seq: 0, acked: 0, start: 1 });
      expect(fresh.epoch).not.toBe(epoch);
      // Ids numbered in the dropped epoch are new to the fresh one.
      expect(await store.assign(user, fresh.epoch, 0, inputs(['e', 'a']))).toEqual(numbered(1, 2));
      await store.close();
    });

    it('drops the numbering on an ack past the last seq, instead of clamping it', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a', 'b']));
      expect(await store.ack(user, epoch, 3)).toBe(false);
      expect(await store.peek(user)).toBeUndefined();
      expect(await store.assign(user, epoch, 0, inputs(['c']))).toBeNull();
      expect((await store.meta(user)).epoch).not.toBe(epoch);
      await store.close();
    });

    it('drops the numbering on a range past the last seq', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a', 'b']));
      expect((await store.range(user, epoch, 2, 2))!.map((e) => e.id)).toEqual(['b']);
      expect(await store.range(user, epoch, 1, 3)).toBeNull();
      expect(await store.peek(user)).toBeUndefined();
      await store.close();
    });

    it('discards only the epoch it names, and again is a no-op', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const first = await store.meta(user);
      await store.assign(user, first.epoch, 0, inputs(['a']));
      await store.discard(user, first.epoch);
      expect(await store.peek(user)).toBeUndefined();
      await store.discard(user, first.epoch);
      const second = await store.meta(user);
      await store.assign(user, second.epoch, 0, inputs(['b', 'c']));
      // A late discard of the old epoch leaves the one another node started meanwhile.
      await store.discard(user, first.epoch);
      expect(await store.peek(user)).toMatchObject({ epoch: second.epoch, seq: 2 });
      await store.close();
    });

    it('keeps a dead-letter intent across acks and trims, and answers it from assign without a new seq', async () => {
      const store = await make({ maxCount: 1, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a', 'b', 'c']));
      expect(await store.deadLetter(user, epoch, 2)).toBe(true);
      expect(await store.deadLetter(user, epoch, 2)).toBe(true);
      // The client's cumulative ack passes the intent, and history of 'b' is trimmed.
      expect(await store.ack(user, epoch, 3)).toBe(true);
      expect((await store.range(user, epoch, 1, 3))!.map((e) => e.seq)).toEqual([3]);
      expect(await store.assign(user, epoch, 3, inputs(['b', 'd', 'b']))).toEqual([intent(2), ...numbered(4), intent(2)]);
      expect(await store.peek(user)).toMatchObject({ seq: 4, acked: 3 });
      await store.close();
    });

    it('records no intent for a trimmed seq, and drops the numbering for one past the last seq', async () => {
      const store = await make({ maxCount: 1, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a', 'b', 'c']));
      await store.ack(user, epoch, 2);
      expect(await store.deadLetter(user, epoch, 1)).toBe(false);
      expect(await store.deadLetter(user, epoch, 0)).toBe(false);
      expect(await store.assign(user, epoch, 3, inputs(['a']))).toEqual(numbered(4));
      expect(await store.deadLetter(user, epoch, 5)).toBeNull();
      expect(await store.peek(user)).toBeUndefined();
      await store.close();
    });

    it('clears only the intents deadLettered names; unknown seqs and a gone epoch are ignored', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a', 'b', 'c']));
      await store.deadLetter(user, epoch, 1);
      await store.deadLetter(user, epoch, 3);
      await store.deadLettered(user, epoch, [3, 2, 99]);
      await store.deadLettered(user, 'not-the-epoch', [1]);
      await store.deadLettered(user, epoch, []);
      expect(await store.assign(user, epoch, 3, inputs(['a', 'b', 'c']))).toEqual([intent(1), ...numbered(2, 3)]);
      await store.close();
    });

    it('answers which seqs have a dead-letter intent, after acks too, without writing', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const { epoch } = await store.meta(user);
      await store.assign(user, epoch, 0, inputs(['a', 'b', 'c', 'd']));
      await store.deadLetter(user, epoch, 2);
      await store.deadLetter(user, epoch, 4);
      await store.ack(user, epoch, 3);
      expect((await store.deadLetterRequests(user, epoch, [4, 1, 2, 3, 2]))?.sort()).toEqual([2, 4]);
      expect(await store.deadLetterRequests(user, epoch, [1, 3, 77])).toEqual([]);
      expect(await store.deadLetterRequests(user, epoch, [])).toEqual([]);
      expect(await store.deadLetterRequests(user, 'not-the-epoch', [2])).toBeNull();
      // Asking cleared nothing: assign still answers the intent.
      expect(await store.assign(user, epoch, 4, inputs(['b']))).toEqual([intent(2)]);
      await store.close();
    });

    it('deletes intents with the numbering, by forget or by a drop', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const user = uid('st');
      const first = await store.meta(user);
      await store.assign(user, first.epoch, 0, inputs(['a']));
      await store.deadLetter(user, first.epoch, 1);
      await store.forget(user);
      const second = await store.meta(user);
      expect(await store.assign(user, second.epoch, 0, inputs(['b', 'a']))).toEqual(numbered(1, 2));
      await store.deadLetter(user, second.epoch, 2);
      expect(await store.assign(user, second.epoch, 9, inputs(['a']))).toBeNull();
      const third = await store.meta(user);
      expect(await store.assign(user, third.epoch, 0, inputs(['a']))).toEqual(numbered(1));
      await store.close();
    });

    it('runs the calls made in one turn in the order they were made, for many users at once', async () => {
      const store = await make({ maxCount: 100, maxAgeMs: 60_000 });
      const [u0, u1, u2] = [uid('st'), uid('st'), uid('st')];
      const [m0, m1] = await Promise.all([store.meta(u0), store.meta(u1)]);
      const [first, other, wrongEpoch, acked, kept, again, recorded, refused, fresh] = await Promise.all([
        store.assign(u0, m0.epoch, 0, inputs(['a', 'b'])),
        store.assign(u1, m1.epoch, 0, inputs(['a'])),
        store.assign(u1, 'not-the-epoch', 0, inputs(['z'])),
        store.ack(u0, m0.epoch, 1),
        store.range(u0, m0.epoch, 1, 2),
        store.assign(u0, m0.epoch, 2, inputs(['b', 'c'])),
        store.deadLetter(u0, m0.epoch, 2),
        store.assign(u0, m0.epoch, 3, inputs(['b'])),
        store.meta(u2),
      ]);
      expect(first).toEqual(numbered(1, 2));
      expect(other).toEqual(numbered(1));
      expect(wrongEpoch).toBeNull();
      expect(acked).toBe(true);
      expect(kept!.map((e) => [e.seq, e.id])).toEqual([
        [1, 'a'],
        [2, 'b'],
      ]);
      expect(again).toEqual(numbered(2, 3));
      expect(recorded).toBe(true);
      expect(refused).toEqual([intent(2)]);
      expect(fresh).toMatchObject({ seq: 0, acked: 0, start: 1 });
      expect(await store.peek(u0)).toMatchObject({ epoch: m0.epoch, seq: 3, acked: 1 });
      expect(await store.peek(u1)).toMatchObject({ epoch: m1.epoch, seq: 1, acked: 0 });
      // A forget followed by a meta in the same turn starts a new epoch.
      const [, after] = await Promise.all([store.forget(u1), store.meta(u1)]);
      expect(after.epoch).not.toBe(m1.epoch);
      expect(after.seq).toBe(0);
      // So does a discard.
      const [, later] = await Promise.all([store.discard(u0, m0.epoch), store.meta(u0)]);
      expect(later.epoch).not.toBe(m0.epoch);
      await store.close();
    });
  });
}
