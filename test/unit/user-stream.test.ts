import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ConsumerFactory } from '../../src/delivery/consumer.js';
import { StreamRegistry } from '../../src/delivery/stream-registry.js';
import { ErrorCode, RelayError } from '../../src/errors.js';
import type { UserStream } from '../../src/delivery/user-stream.js';
import { silentLogger } from '../../src/log.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import {
  done,
  elapse,
  FakeQueue,
  FakeSub,
  newMemory,
  newStream,
  recordingAcks,
  settle,
  setup,
  storeWith,
} from '../helpers/delivery-fakes.js';

describe('UserStream', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('never has more than the window unacked on a connection', async () => {
    const { queue, stream } = setup({ prefetch: 10 });
    const sub = new FakeSub(3);
    await done(stream.attach(sub, undefined));
    queue.publish(20);
    await settle();
    expect(sub.seqs).toEqual([1, 2, 3]);
    stream.ack(sub, 1);
    await settle();
    expect(sub.seqs).toEqual([1, 2, 3, 4]);
    stream.ack(sub, 4);
    await settle();
    expect(sub.seqs).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('acks RabbitMQ only for seqs a client acked, with one multiple-ack when exact', async () => {
    const { queue, stream } = setup({ prefetch: 5 });
    const sub = new FakeSub(5);
    await done(stream.attach(sub, undefined));
    queue.publish(5);
    await settle();
    expect(queue.acks).toEqual([]);
    stream.ack(sub, 3);
    // Acks reach RabbitMQ once per turn of the event loop.
    expect(queue.acks).toEqual([]);
    await settle();
    expect(queue.acks).toEqual([{ tag: 3, multiple: true }]);
    expect([...queue.unacked.keys()]).toEqual([4, 5]);
  });

  it('coalesces client acks of one turn into one broker ack, with one store write in flight', async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    const { store, written } = recordingAcks(memory, 10);
    const stream = newStream(queue.factory, store, { user: 'u7', prefetch: 10 });
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publish(10);
    await settle();
    for (let seq = 1; seq <= 10; seq += 1) stream.ack(sub, seq);
    await elapse(50);
    expect(queue.acks).toEqual([{ tag: 10, multiple: true }]);
    // The first write went out at once; the other nine acks became one write of the latest mark.
    expect(written).toEqual([1, 10]);
    expect((await memory.peek('u7'))?.acked).toBe(10);
  });

  it('with storeAckIntervalMs, writes the acks of one interval to the store as one write', async () => {
    vi.useFakeTimers();
    try {
      const queue = new FakeQueue();
      const memory = newMemory();
      const { store, written } = recordingAcks(memory);
      const stream = newStream(queue.factory, store, { user: 'u8', prefetch: 10, storeAckIntervalMs: 1_000 });
      const sub = new FakeSub(10);
      const attached = stream.attach(sub, undefined);
      await vi.advanceTimersByTimeAsync(5);
      await attached;
      queue.publish(10);
      await vi.advanceTimersByTimeAsync(5);
      stream.ack(sub, 1);
      await vi.advanceTimersByTimeAsync(100);
      stream.ack(sub, 3);
      await vi.advanceTimersByTimeAsync(100);
      // RabbitMQ got each at once; the store nothing yet.
      expect(queue.acks).toEqual([
        { tag: 1, multiple: true },
        { tag: 3, multiple: true },
      ]);
      expect(written).toEqual([]);
      await vi.advanceTimersByTimeAsync(800);
      expect(written).toEqual([3]);
      stream.ack(sub, 7);
      await vi.advanceTimersByTimeAsync(999);
      expect(written).toEqual([3]);
      await vi.advanceTimersByTimeAsync(1);
      expect(written).toEqual([3, 7]);
      expect((await memory.peek('u8'))?.acked).toBe(7);
    } finally {
      vi.useRealTimers();
    }
  });

  it('writes the acked mark at close without waiting for storeAckIntervalMs', async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    // An interval longer than the test's timeout: close must not wait for it.
    const stream = newStream(queue.factory, memory, { user: 'u10', prefetch: 10, storeAckIntervalMs: 600_000 });
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publish(5);
    await settle();
    stream.ack(sub, 4);
    await settle();
    expect((await memory.peek('u10'))?.acked).toBe(0);
    stream.detach(sub);
    await done(stream.close());
    expect((await memory.peek('u10'))?.acked).toBe(4);
    expect([...queue.unacked.keys(), ...queue.ready.map((m) => m.id)]).toHaveLength(1);
  });

  it('acks a redelivered duplicate with a later tag one by one, never a later message', async () => {
    const { queue, stream } = setup({ prefetch: 5 });
    const sub = new FakeSub(5);
    await done(stream.attach(sub, undefined));
    // The producer published "a" twice (a retry): the second copy gets seq 1 again.
    queue.publishIds(['a', 'b', 'a']);
    await settle();
    expect(sub.seqs).toEqual([1, 2]);
    stream.ack(sub, 1);
    await settle();
    // Tags 1 and 3 are seq 1; tag 2 is seq 2 and must stay unacked.
    expect(queue.acks).toEqual([
      { tag: 1, multiple: false },
      { tag: 3, multiple: false },
    ]);
    expect([...queue.unacked.keys()]).toEqual([2]);
  });

  it('rewinds on nack with requeue and resends in order, marked redelivered', async () => {
    const { queue, stream } = setup();
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publish(4);
    await settle();
    expect(stream.nack(sub, 2, true)).toBe('ok');
    await settle();
    expect(sub.frames.map((f) => [f.seq, f.redelivered])).toEqual([
      [1, false],
      [2, false],
      [3, false],
      [4, false],
      [2, true],
      [3, true],
      [4, true],
    ]);
    expect(queue.rejected).toEqual([]);
  });

  it('dead-letters a seq nacked with requeue past the limit, and one nacked without requeue', async () => {
    const { queue, stream } = setup({ nackLimit: 2 });
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publishIds(['a', 'b', 'c']);
    await settle();
    expect(stream.nack(sub, 1, true)).toBe('ok');
    await settle();
    expect(stream.nack(sub, 1, true)).toBe('ok');
    await settle();
    expect(stream.nack(sub, 1, true)).toBe('dead-lettered');
    await settle();
    // Past the limit the client is not sent seq 1 again, but what followed it is.
    expect(sub.seqs).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3, 2, 3]);
    expect(stream.nack(sub, 3, false)).toBe('dead-lettered');
    // The intent is written to the store first, then the message is rejected.
    await settle();
    expect(queue.rejected).toEqual([
      { id: 'a', requeue: false },
      { id: 'c', requeue: false },
    ]);
  });

  it('refuses acks and nacks of seqs not sent on the connection', async () => {
    const { queue, stream } = setup();
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publish(2);
    await settle();
    expect(stream.ack(sub, 3)).toBe('unknown');
    expect(stream.nack(sub, 3, true)).toBe('unknown');
    expect(stream.ack(sub, 2)).toBe('ok');
    expect(stream.ack(sub, 1)).toBe('stale');
    expect(stream.nack(sub, 1, true)).toBe('unknown');
  });

  it('keeps positions when the consumer is lost, and does not resend what a connection has', async () => {
    const { queue, stream } = setup({ prefetch: 4 });
    const sub = new FakeSub(4);
    await done(stream.attach(sub, undefined));
    queue.publish(6);
    await settle();
    expect(sub.seqs).toEqual([1, 2, 3, 4]);
    stream.ack(sub, 2);
    await settle();
    queue.lose();
    await elapse(30);
    expect(sub.statuses).toEqual(['degraded', 'ok']);
    expect(queue.starts).toBe(2);
    stream.ack(sub, 4);
    await settle();
    expect(sub.seqs).toEqual([1, 2, 3, 4, 5, 6]);
    // Seqs 3 and 4 came back from RabbitMQ and were acked with the client's ack, not sent again.
    stream.ack(sub, 6);
    await settle();
    expect(queue.unacked.size).toBe(0);
    expect(queue.ready.length).toBe(0);
  });

  it('keeps what it could not number on the consumer and numbers it in order once the store answers', async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    let failures = 2;
    const store = storeWith(memory, {
      assign: (user: string, epoch: string, seen: number, inputs: readonly { id: string; fragment: string }[]) => {
        if (failures > 0) {
          failures -= 1;
          return Promise.reject(new Error('store down'));
        }
        return memory.assign(user, epoch, seen, inputs);
      },
    });
    const stream = newStream(queue.factory, store, { user: 'u4', prefetch: 10 });
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publish(5);
    await elapse(2_500);
    // The channel was never closed (closing would return the messages behind earlier returns).
    expect(queue.starts).toBe(1);
    expect(sub.frames.map((f) => [f.seq, f.n])).toEqual([1, 2, 3, 4, 5].map((seq) => [seq, 1000 + seq - 1]));
    expect(sub.statuses).toEqual(['degraded', 'ok']);
  });

  it('numbers every delivery it received before releasing the consumer', async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    const store = storeWith(memory, {
      assign: async (user: string, epoch: string, seen: number, inputs: readonly { id: string; fragment: string }[]) => {
        await new Promise((resolve) => setTimeout(resolve, 30));
        return memory.assign(user, epoch, seen, inputs);
      },
    });
    const stream = newStream(queue.factory, store, { user: 'u5', prefetch: 10 });
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publish(3);
    await elapse(5);
    queue.publish(4);
    stream.detach(sub);
    await done(stream.close());
    expect((await memory.peek('u5'))?.seq).toBe(7);
    expect(queue.ready).toHaveLength(7);
  });

  it("numbers a new consumer's deliveries that arrived while an old consumer's batch was being numbered", async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    let slow = true;
    const store = storeWith(memory, {
      assign: async (user: string, epoch: string, seen: number, inputs: readonly { id: string; fragment: string }[]) => {
        if (slow) {
          slow = false;
          // The consumer is lost, and its replacement fills its prefetch, while this call waits.
          await Promise.resolve();
          queue.lose();
          await new Promise((resolve) => setTimeout(resolve, 40));
        }
        return memory.assign(user, epoch, seen, inputs);
      },
    });
    const stream = newStream(queue.factory, store, { user: 'u6', prefetch: 4 });
    const sub = new FakeSub(4);
    await done(stream.attach(sub, undefined));
    queue.publish(4);
    await elapse(100);
    expect(queue.starts).toBe(2);
    // Without a second look at what arrived meanwhile, nothing would be numbered or sent: the
    // full prefetch brings no further delivery to start numbering.
    expect(sub.seqs).toEqual([1, 2, 3, 4]);
    expect(sub.frames.map((f) => f.n)).toEqual([1000, 1001, 1002, 1003]);
  });

  it('joins two hellos that waited for the same closing stream to one new stream (one consumer)', async () => {
    const queue = new FakeQueue();
    const slowClose: ConsumerFactory = async (user, prefetch, callbacks) => {
      const handle = await queue.factory(user, prefetch, callbacks);
      return {
        ...handle,
        close: async () => {
          await new Promise((resolve) => setTimeout(resolve, 30));
          await handle.close();
        },
      };
    };
    const registry = new StreamRegistry({
      store: newMemory(),
      consumers: slowClose,
      prefetch: 10,
      nackLimit: 3,
      maxMessageBytes: 1024,
      logger: silentLogger(),
    });
    const first = new FakeSub(10);
    const { stream: closing } = await done(registry.attach('u8', first, undefined));
    closing.detach(first);
    const [a, b] = await done(
      Promise.all([registry.attach('u8', new FakeSub(10), undefined), registry.attach('u8', new FakeSub(10), undefined)]),
    );
    expect(a.stream).not.toBe(closing);
    expect(a.stream).toBe(b.stream);
    expect(registry.get('u8')).toBe(a.stream);
    expect(queue.starts).toBe(2);
  });

  it('reports a consumer that cannot start with its own error, after one start, on a first attach', async () => {
    let starts = 0;
    const failing: ConsumerFactory = async () => {
      starts += 1;
      throw new RelayError(ErrorCode.brokerUnavailable, 'cannot open an AMQP channel', { retryable: true });
    };
    const registry = new StreamRegistry({
      store: newMemory(),
      consumers: failing,
      prefetch: 10,
      nackLimit: 3,
      maxMessageBytes: 1024,
      logger: silentLogger(),
    });
    const error = await done(registry.attach('u12', new FakeSub(10), undefined)).catch((caught: unknown) => caught);
    // Not a StreamClosedError retried on new streams: the hello gets the broker's error, retryable.
    expect(error).toBeInstanceOf(RelayError);
    expect((error as RelayError).code).toBe(ErrorCode.brokerUnavailable);
    expect(starts).toBe(1);
  });

  it('writes the latest acked mark to the store before releasing the consumer', async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    const { store } = recordingAcks(memory, 20);
    const stream = newStream(queue.factory, store, { user: 'u9', prefetch: 10 });
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publish(5);
    await settle();
    stream.ack(sub, 2);
    stream.ack(sub, 5);
    stream.detach(sub);
    await done(stream.close());
    // The next stream of this user reads its starting point from the store.
    expect((await memory.peek('u9'))?.acked).toBe(5);
    expect(queue.ready).toHaveLength(0);
  });

  it('does not dead-letter a seq another connection of the user already processed', async () => {
    const { queue, stream } = setup({ prefetch: 4 });
    const a = new FakeSub(4);
    const b = new FakeSub(4);
    await done(stream.attach(a, undefined));
    await done(stream.attach(b, undefined));
    queue.publish(3);
    await settle();
    expect(stream.ack(a, 3)).toBe('ok');
    expect(stream.nack(b, 2, false)).toBe('stale');
    await settle();
    expect(queue.rejected).toEqual([]);
    expect(queue.acks).toEqual([{ tag: 3, multiple: true }]);
  });

  it('keeps the consumer for lingerMs after the last connection left, for a reconnect to reuse', async () => {
    const queue = new FakeQueue();
    const stream = newStream(queue.factory, newMemory(), { user: 'u10', prefetch: 4, lingerMs: 50 });
    const first = new FakeSub(4);
    const { epoch } = await done(stream.attach(first, undefined));
    queue.publish(6);
    await settle();
    expect(first.seqs).toEqual([1, 2, 3, 4]);
    stream.ack(first, 2);
    stream.detach(first);
    await settle();
    expect(stream.lingering).toBe(true);
    expect(stream.closed).toBe(false);
    // The client comes back having processed 3: same consumer, nothing went back to the queue.
    const again = new FakeSub(4);
    const result = await done(stream.attach(again, { epoch, lastSeq: 3 }));
    expect(result).toMatchObject({ resumed: true, lastSeq: 3 });
    await settle();
    expect(queue.starts).toBe(1);
    expect(again.frames.map((f) => [f.seq, f.redelivered])).toEqual([
      [4, true],
      [5, false],
      [6, false],
    ]);
    // Then it leaves for good: after the linger the consumer is released, unacked ones return in order.
    stream.detach(again);
    await elapse(120);
    expect(stream.closed).toBe(true);
    expect(queue.ready.map((m) => m.n)).toEqual([1003, 1004, 1005]);
  });

  it('closes within 2 s while a consumer is still starting, and that consumer closes itself when it starts', async () => {
    const queue = new FakeQueue();
    let closedLate = false;
    let first = true;
    const slowStart: ConsumerFactory = async (user, prefetch, callbacks) => {
      const handle = await queue.factory(user, prefetch, callbacks);
      if (first) {
        first = false;
        return handle;
      }
      // The restart after a loss hangs (a slow broker) for longer than close waits.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      return {
        ...handle,
        close: async () => {
          closedLate = true;
          await handle.close();
        },
      };
    };
    const stream = newStream(slowStart, newMemory(), { user: 'u11', prefetch: 4 });
    await done(stream.attach(new FakeSub(4), undefined));
    queue.lose();
    await elapse(20);
    const started = Date.now();
    await done(stream.close());
    expect(Date.now() - started).toBeLessThan(2_400);
    expect(closedLate).toBe(false);
    await elapse(700);
    expect(closedLate).toBe(true);
  });

  it('restarts a consumer whose channel was lost while it was starting', async () => {
    const { queue, stream } = setup();
    const factory = queue.factory;
    let first = true;
    queue.factory = async (user, prefetch, callbacks) => {
      const handle = await factory(user, prefetch, callbacks);
      if (first) {
        first = false;
        queue.lose();
        // Still starting when the restart timer fires.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return handle;
    };
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publish(3);
    await elapse(50);
    expect(queue.starts).toBe(2);
    expect(sub.seqs).toEqual([1, 2, 3]);
  });

  it('finishes redelivered messages at or below the acked mark without sending them', async () => {
    const { queue, stream } = setup({ prefetch: 4 });
    const a = new FakeSub(4);
    await done(stream.attach(a, undefined));
    queue.publish(3);
    await settle();
    const { epoch } = await done(stream.attach(new FakeSub(4), { epoch: (await setupEpoch(stream)) ?? '', lastSeq: 3 }));
    expect(epoch.length).toBeGreaterThan(0);
    await settle();
    // The second connection said it processed up to 3: RabbitMQ is acked for all three.
    expect(queue.unacked.size).toBe(0);
    expect(a.seqs).toEqual([1, 2, 3]);
  });

  it('resumes from history when RabbitMQ no longer holds the messages', async () => {
    const { queue, stream } = setup();
    const first = new FakeSub(10);
    const welcome = await done(stream.attach(first, undefined));
    queue.publish(5);
    await settle();
    stream.ack(first, 5);
    const late = new FakeSub(10);
    const result = await done(stream.attach(late, { epoch: welcome.epoch, lastSeq: 2 }));
    await settle();
    expect(result).toMatchObject({ resumed: true, recovered: true, lastSeq: 2 });
    expect(late.frames.map((f) => [f.seq, f.redelivered])).toEqual([
      [3, true],
      [4, true],
      [5, true],
    ]);
  });

  it('says recovered:false and where it continues when history no longer covers the gap', async () => {
    const queue = new FakeQueue();
    const store = new MemoryStore({ maxCount: 2, maxAgeMs: 3_600_000 });
    const stream = newStream(queue.factory, store, { user: 'u2', prefetch: 10 });
    const first = new FakeSub(10);
    const welcome = await done(stream.attach(first, undefined));
    queue.publish(6);
    await settle();
    stream.ack(first, 6);
    await settle();
    const late = new FakeSub(10);
    const result = await done(stream.attach(late, { epoch: welcome.epoch, lastSeq: 1 }));
    await settle();
    expect(result).toMatchObject({ resumed: true, recovered: false, lastSeq: 4 });
    expect(late.seqs).toEqual([5, 6]);
  });

  it('resets every connection when the store lost the numbering', async () => {
    const { queue, store, stream } = setup();
    const sub = new FakeSub(10);
    const welcome = await done(stream.attach(sub, undefined));
    queue.publish(2);
    await settle();
    store.clear();
    queue.publish(1);
    await settle();
    expect(sub.resets).toHaveLength(1);
    expect(sub.resets[0]!.epoch).not.toBe(welcome.epoch);
    expect(stream.closed).toBe(true);
    // The stream released everything: all three messages are back in the queue, in order.
    expect(queue.unacked.size).toBe(0);
    expect(queue.ready).toHaveLength(3);
  });

  it('dead-letters a message that is not valid JSON instead of delivering or losing it silently', async () => {
    const queue = new FakeQueue();
    const store = new MemoryStore({ maxCount: 10, maxAgeMs: 3_600_000 });
    const stream = newStream(queue.factory, store, { user: 'u3', prefetch: 10 });
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    const callbacks = queue.callbacks!;
    queue.unacked.set(99, { id: 'bad', n: 0 });
    callbacks.onDelivery({
      tag: 99,
      content: Buffer.from('{oops'),
      messageId: 'bad',
      contentType: 'application/json',
      timestamp: 1,
      headers: undefined,
      redelivered: false,
    });
    await settle();
    expect(queue.rejected).toEqual([{ id: 'bad', requeue: false }]);
    expect(sub.frames).toEqual([]);
  });
});

async function setupEpoch(stream: UserStream): Promise<string | undefined> {
  const probe = new FakeSub(1);
  const result = await done(stream.attach(probe, undefined));
  stream.detach(probe);
  return result.epoch;
}
