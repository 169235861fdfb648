/**
 * Regression tests for ways the delivery core used to lose messages silently: each one acked a
 * message to RabbitMQ that no client had processed, or acked one a client asked to dead-letter.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { MemoryStore } from '../../src/store/memory-store.js';
import type { AssignInput } from '../../src/store/store.js';
import { done, FakeQueue, FakeSub, newMemory, newStream, settle, storeWith } from '../helpers/delivery-fakes.js';

describe('UserStream when the store goes back in time', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('ends the epoch instead of acking new messages numbered at seqs clients already acked', async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    const stream = newStream(queue.factory, memory, { user: 'rb1', prefetch: 10 });
    const sub = new FakeSub(10);
    const welcome = await done(stream.attach(sub, undefined));
    queue.publish(2);
    await settle();
    const older = memory.saveState('rb1');
    queue.publish(3);
    await settle();
    expect(sub.seqs).toEqual([1, 2, 3, 4, 5]);
    stream.ack(sub, 5);
    await settle();
    expect(queue.ready).toHaveLength(0);
    expect(queue.unacked.size).toBe(0);
    const acksBefore = queue.acks.length;
    // Redis restarts from a file written after seq 2: seq 5 and the acked mark are gone.
    memory.restoreState('rb1', older);
    queue.publish(3);
    await settle();
    // Before the fix these three got seqs 3..5 again, at or below the acked mark, and were acked unsent.
    expect(queue.acks.length).toBe(acksBefore);
    expect(sub.resets).toHaveLength(1);
    expect(sub.resets[0]!.epoch).not.toBe(welcome.epoch);
    expect(stream.closed).toBe(true);
    await settle();
    // The client resets and reconnects: it gets all three, numbered in the new epoch.
    const waiting = queue.ready.map((m) => m.n);
    expect(waiting).toHaveLength(3);
    const again = newStream(queue.factory, memory, { user: 'rb1', prefetch: 10 });
    const fresh = new FakeSub(10);
    const result = await done(again.attach(fresh, { epoch: welcome.epoch, lastSeq: 5 }));
    await settle();
    expect(result.epoch).toBe(sub.resets[0]!.epoch);
    expect(fresh.seqs).toEqual([1, 2, 3]);
    expect(fresh.frames.map((f) => f.n)).toEqual(waiting);
  });

  it('ends the epoch when a client resumes past the store head, and says so', async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    const first = newStream(queue.factory, memory, { user: 'rb2', prefetch: 10 });
    const sub = new FakeSub(10);
    const welcome = await done(first.attach(sub, undefined));
    queue.publish(1);
    await settle();
    const older = memory.saveState('rb2');
    queue.publish(3);
    await settle();
    first.ack(sub, 4);
    first.detach(sub);
    await done(first.close());
    memory.restoreState('rb2', older);
    queue.publish(2);
    // A new node (no memory of the user) meets a client that saw seq 4 of an epoch whose store has 1.
    const second = newStream(queue.factory, memory, { user: 'rb2', prefetch: 10 });
    const back = new FakeSub(10);
    const result = await done(second.attach(back, { epoch: welcome.epoch, lastSeq: 4 }));
    await settle();
    expect(result.reset).toMatchObject({ reason: 'epoch-unknown' });
    expect(result.epoch).not.toBe(welcome.epoch);
    expect(result.recovered).toBe(false);
    expect(result.warning).toMatch(/ahead of the stream/);
    // The two new messages are delivered as seqs 1 and 2 of the new epoch; nothing was acked unsent.
    expect(back.seqs).toEqual([1, 2]);
    expect(queue.unacked.size).toBe(2);
  });
});

describe('UserStream with a short reply from the store', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('fails the batch loudly and numbers it again instead of acking the message without a seq', async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    let short = 1;
    const store = storeWith(memory, {
      assign: async (user: string, epoch: string, seen: number, inputs: readonly AssignInput[]) => {
        const assigned = await memory.assign(user, epoch, seen, inputs);
        if (short > 0 && assigned) {
          short -= 1;
          return assigned.slice(0, -1);
        }
        return assigned;
      },
    });
    const stream = newStream(queue.factory, store, { user: 'sr1', prefetch: 10 });
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publish(3);
    await settle();
    expect(sub.seqs).toEqual([]);
    expect(queue.acks).toEqual([]);
    expect(sub.statuses).toEqual(['degraded']);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(sub.seqs).toEqual([1, 2, 3]);
    expect(queue.acks).toEqual([]);
    expect(sub.statuses).toEqual(['degraded', 'ok']);
  });
});

describe('UserStream dead-letter requests', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  /** A stream with three messages sent to one connection. */
  async function three(user: string, store: MemoryStore = newMemory()) {
    const queue = new FakeQueue();
    const stream = newStream(queue.factory, store, { user, prefetch: 10 });
    const sub = new FakeSub(10);
    const welcome = await done(stream.attach(sub, undefined));
    queue.publishIds(['a', 'b', 'c']);
    await settle();
    expect(sub.seqs).toEqual([1, 2, 3]);
    return { queue, stream, sub, store, welcome };
  }

  it('dead-letters a message nacked while the consumer was lost, even after a later cumulative ack', async () => {
    const { queue, stream, sub } = await three('dl1');
    queue.lose();
    expect(stream.nack(sub, 1, false)).toBe('dead-lettered');
    expect(stream.ack(sub, 3)).toBe('ok');
    await settle();
    await settle();
    // Before the fix the ack cleared the request, and the redelivered message was acked.
    expect(queue.rejected).toEqual([{ id: 'a', requeue: false }]);
    expect(queue.ready).toHaveLength(0);
    expect(queue.unacked.size).toBe(0);
  });

  it('dead-letters a message whose reject went to a channel that had died unnoticed', async () => {
    const { queue, stream, sub } = await three('dl2');
    queue.cut();
    expect(stream.nack(sub, 1, false)).toBe('dead-lettered');
    expect(stream.ack(sub, 3)).toBe('ok');
    await settle();
    // The reject went nowhere; the relay learns of the loss only now.
    expect(queue.rejected).toEqual([]);
    queue.noticeLoss();
    await settle();
    await settle();
    expect(queue.rejected).toEqual([{ id: 'a', requeue: false }]);
    expect(queue.ready).toHaveLength(0);
    expect(queue.unacked.size).toBe(0);
  });

  it('dead-letters after a relay restart, from the request kept in the store', async () => {
    const { queue, stream, sub, store, welcome } = await three('dl3');
    queue.cut();
    stream.nack(sub, 1, false);
    stream.ack(sub, 3);
    await settle();
    // The relay goes away before it noticed the loss; a new one starts on the same store.
    stream.detach(sub);
    await done(stream.close());
    const restarted = newStream(queue.factory, store, { user: 'dl3', prefetch: 10 });
    const back = new FakeSub(10);
    await done(restarted.attach(back, { epoch: welcome.epoch, lastSeq: 3 }));
    await settle();
    await settle();
    expect(queue.rejected).toEqual([{ id: 'a', requeue: false }]);
    expect(back.seqs).toEqual([]);
    expect(queue.ready).toHaveLength(0);
    expect(queue.unacked.size).toBe(0);
  });

  it('rejects a message a client asked to dead-letter at once, while the store cannot record the request', async () => {
    const memory = newMemory();
    let down = true;
    const store = Object.assign(Object.create(memory) as MemoryStore, {
      deadLetter: (user: string, epoch: string, seq: number) =>
        down ? Promise.reject(new Error('store down')) : memory.deadLetter(user, epoch, seq),
    });
    const { queue, stream, sub } = await three('dl4', store);
    expect(stream.nack(sub, 2, false)).toBe('dead-lettered');
    // Rejected before any ack: the held message does not wait for the store.
    expect(queue.rejected).toEqual([{ id: 'b', requeue: false }]);
    stream.ack(sub, 3);
    await settle();
    // RabbitMQ took the reject (a round trip on its channel confirmed it): the request is done,
    // never written, and the store's acked mark passes 2.
    expect(queue.unacked.size).toBe(0);
    expect((await memory.peek('dl4'))?.acked).toBe(3);
    down = false;
    await vi.advanceTimersByTimeAsync(2_000);
    expect(await memory.deadLetterRequests('dl4', stream.epoch, [2])).toEqual([]);
    expect(queue.rejected).toHaveLength(1);
  });

  it('keeps the acked mark below a request whose reject RabbitMQ has not confirmed, and rejects the message when it comes back', async () => {
    const memory = newMemory();
    const store = storeWith(memory, { deadLetter: () => Promise.reject(new Error('store down')) });
    const { queue, stream, sub } = await three('dl5', store);
    // The channel dies unnoticed: the reject goes nowhere and its round trip fails.
    queue.cut();
    expect(stream.nack(sub, 2, false)).toBe('dead-lettered');
    stream.ack(sub, 3);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(queue.rejected).toEqual([]);
    // A relay restarted from the store's mark must not take 2 for processed.
    expect((await memory.peek('dl5'))?.acked).toBe(1);
    // The next consumer gets 1-3 again: 1 and 3 are acked, 2 rejected (the request is kept here).
    queue.noticeLoss();
    await vi.advanceTimersByTimeAsync(1_000);
    await settle();
    expect(queue.rejected).toEqual([{ id: 'b', requeue: false }]);
    expect(queue.unacked.size).toBe(0);
    expect(queue.ready).toEqual([]);
    expect((await memory.peek('dl5'))?.acked).toBe(3);
  });
});
