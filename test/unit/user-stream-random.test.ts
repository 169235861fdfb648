/**
 * Random runs of one user's stream against the fake broker and a store that fails 15 % of its
 * calls: publishes, cumulative acks, nacks with and without requeue, consumers lost (noticed at
 * once, or only after the channel died), connections joining with a resume position and leaving.
 * After each run the store heals and the clients ack what they were sent. Checked every run:
 * - every message acked to RabbitMQ was sent to a connection first, and none a client asked to
 *   dead-letter was acked;
 * - no delivery tag was settled twice or on the wrong channel (a channel error in RabbitMQ);
 * - nothing is stuck: the queue drains completely (unless the stream itself closed).
 * Seeds are fixed, so a failure names a run that can be replayed.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ConsumerFactory } from '../../src/delivery/consumer.js';
import type { MemoryStore } from '../../src/store/memory-store.js';
import { done, FakeQueue, FakeSub, newMemory, newStream, settle } from '../helpers/delivery-fakes.js';

const SEEDS = 150;
const STEPS = 120;

/** A small seeded generator (numbers in [0, 1)), so that every run can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** The fake broker's consumer, recording the ids acked to it and any channel error. */
function recordingBroker(queue: FakeQueue): { factory: ConsumerFactory; ackedIds: string[]; channelErrors: string[] } {
  const ackedIds: string[] = [];
  const channelErrors: string[] = [];
  const factory: ConsumerFactory = async (user, prefetch, callbacks) => {
    const handle = await queue.factory(user, prefetch, callbacks);
    const mine = queue.callbacks;
    return {
      ...handle,
      ack: (tag, multiple) => {
        if (queue.callbacks === mine) {
          const tags = multiple ? [...queue.unacked.keys()].filter((t) => t <= tag) : [tag];
          for (const t of tags) {
            const message = queue.unacked.get(t);
            if (message) ackedIds.push(message.id);
          }
        }
        try {
          handle.ack(tag, multiple);
        } catch (error) {
          channelErrors.push(String(error));
        }
      },
      reject: (tag, requeue) => {
        try {
          handle.reject(tag, requeue);
        } catch (error) {
          channelErrors.push(String(error));
        }
      },
    };
  };
  return { factory, ackedIds, channelErrors };
}

/** The memory store with assign, ack, deadLetter and range failing when `fails()` says so. */
function flakyStore(memory: MemoryStore, fails: () => boolean): MemoryStore {
  const down = () => Promise.reject(new Error('store down'));
  return Object.assign(Object.create(memory) as MemoryStore, {
    assign: (...args: Parameters<MemoryStore['assign']>) => (fails() ? down() : memory.assign(...args)),
    ack: (...args: Parameters<MemoryStore['ack']>) => (fails() ? down() : memory.ack(...args)),
    deadLetter: (...args: Parameters<MemoryStore['deadLetter']>) => (fails() ? down() : memory.deadLetter(...args)),
    range: (...args: Parameters<MemoryStore['range']>) => (fails() ? down() : memory.range(...args)),
  });
}

const lastSent = (sub: FakeSub): number => sub.frames.at(-1)?.seq ?? 0;

describe('UserStream in random runs', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  for (let seed = 1; seed <= SEEDS; seed += 1) {
    it(`seed ${seed}: acks only what was sent and not dead-lettered, and drains`, async () => {
      const next = random(seed);
      const queue = new FakeQueue();
      const { factory, ackedIds, channelErrors } = recordingBroker(queue);
      let healthy = false;
      const store = flakyStore(newMemory(), () => !healthy && next() < 0.15);
      const stream = newStream(factory, store, { user: 'r', prefetch: 6, nackLimit: 1 });
      const subs: FakeSub[] = [];
      const everySub: FakeSub[] = [];
      const deadLetterRequested = new Set<number>();
      let epoch = '';
      let ackedByClients = 0;
      let published = 1000;

      const join = async (): Promise<void> => {
        const sub = new FakeSub(1 + Math.floor(next() * 5));
        const result = await done(stream.attach(sub, epoch ? { epoch, lastSeq: ackedByClients } : undefined)).catch(() => undefined);
        if (!result) return;
        epoch = result.epoch;
        subs.push(sub);
        everySub.push(sub);
        ackedByClients = Math.max(ackedByClients, result.lastSeq);
      };
      const ack = (sub: FakeSub, seq: number): void => {
        if (stream.ack(sub, seq) === 'ok') ackedByClients = Math.max(ackedByClients, seq);
      };

      await join();
      for (let step = 0; step < STEPS && !stream.closed && subs.length > 0; step += 1) {
        const action = next();
        const sub = subs[Math.floor(next() * subs.length)]!;
        const sent = lastSent(sub);
        if (action < 0.25) {
          const count = 1 + Math.floor(next() * 3);
          for (let i = 0; i < count; i += 1, published += 1) queue.ready.push({ id: `m${published}`, n: published, redelivered: false });
          queue.dispatch();
        } else if (action < 0.55 && sent > 0) {
          ack(sub, Math.max(1, sent - Math.floor(next() * 2)));
        } else if (action < 0.65 && sent > 0) {
          if (stream.nack(sub, sent, next() < 0.5) === 'dead-lettered') deadLetterRequested.add(sent);
        } else if (action < 0.7) {
          queue.lose();
        } else if (action < 0.74) {
          queue.cut();
          await settle();
          queue.noticeLoss();
        } else if (action < 0.78 && subs.length < 3) {
          await join();
        } else if (action < 0.8 && subs.length > 1) {
          stream.detach(sub);
          subs.splice(subs.indexOf(sub), 1);
        }
        await settle();
      }

      // The store heals; the clients ack everything they are sent until the queue is empty.
      healthy = true;
      for (let round = 0; round < 600 && !stream.closed && (round < 5 || queue.ready.length + queue.unacked.size > 0); round += 1) {
        for (const sub of subs) if (lastSent(sub) > 0) ack(sub, lastSent(sub));
        await settle();
        await vi.advanceTimersByTimeAsync(1_100);
      }

      const seqOf = new Map<string, number>();
      for (const sub of everySub) for (const frame of sub.frames) seqOf.set(`m${frame.n}`, frame.seq);
      const wrongAcks = ackedIds.flatMap((id) => {
        const seq = seqOf.get(id);
        if (seq === undefined) return [`${id} acked but never sent`];
        return deadLetterRequested.has(seq) ? [`${id} (seq ${seq}) acked though a client asked to dead-letter it`] : [];
      });
      expect(wrongAcks).toEqual([]);
      expect(channelErrors).toEqual([]);
      if (!stream.closed) expect({ ready: queue.ready.length, unacked: queue.unacked.size }).toEqual({ ready: 0, unacked: 0 });
    });
  }
});
