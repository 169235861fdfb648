/** Delivery receipts through a user stream: no broker ack or reject of a message that asked before its receipt is confirmed. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeQueue, FakeReceiptSink, FakeSub, done, elapse, newMemory, newStream, settle, storeWith } from '../helpers/delivery-fakes.js';

function setupWithReceipts(options: { maxMessageBytes?: number } = {}) {
  const queue = new FakeQueue();
  const sink = new FakeReceiptSink();
  const stream = newStream((user, prefetch, callbacks) => queue.factory(user, prefetch, callbacks), newMemory(), {
    prefetch: 10,
    receipts: sink,
    ...options,
  });
  return { queue, sink, stream };
}

/** Acked tags, expanded from multiple acks over 1..max. */
function ackedTags(queue: FakeQueue): number[] {
  const tags = new Set<number>();
  for (const { tag, multiple } of queue.acks) {
    if (!multiple) tags.add(tag);
    else for (let t = 1; t <= tag; t += 1) tags.add(t);
  }
  return [...tags].sort((a, b) => a - b);
}

describe('UserStream with delivery receipts', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('acks a message that asked only once its receipt is confirmed, and the others at once', async () => {
    const { queue, sink, stream } = setupWithReceipts();
    queue.receiptIds.add('b').add('d');
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publishIds(['a', 'b', 'c', 'd', 'e']);
    await settle();
    stream.ack(sub, 5);
    await settle();
    // a, c, e acked one by one (b and d are still outstanding below them), in the same turn as the client's ack.
    expect(ackedTags(queue)).toEqual([1, 3, 5]);
    expect(sink.batches).toHaveLength(1);
    expect(sink.all).toMatchObject([
      { messageId: 'b', user: 'u1', seq: 2, outcome: 'acked' },
      { messageId: 'd', user: 'u1', seq: 4, outcome: 'acked' },
    ]);
    expect(sink.all[0]!.epoch).toBe(stream.epoch);
    sink.confirm();
    await settle();
    expect(ackedTags(queue)).toEqual([1, 2, 3, 4, 5]);
    expect(queue.unacked.size).toBe(0);
  });

  it('acks a burst that asked with one batch of receipts and one multiple ack', async () => {
    const { queue, sink, stream } = setupWithReceipts();
    const ids = Array.from({ length: 8 }, (_, i) => `r${i}`);
    for (const id of ids) queue.receiptIds.add(id);
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publishIds(ids);
    await settle();
    for (let seq = 1; seq <= 8; seq += 1) stream.ack(sub, seq);
    await settle();
    expect(sink.batches.map((batch) => batch.length)).toEqual([8]);
    expect(queue.acks).toEqual([]);
    sink.confirm();
    await settle();
    expect(queue.acks).toEqual([{ tag: 8, multiple: true }]);
  });

  it('keeps the message unacked while its receipt fails, and acks it once a retry is confirmed', async () => {
    const { queue, sink, stream } = setupWithReceipts();
    queue.receiptIds.add('a');
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publishIds(['a']);
    await settle();
    stream.ack(sub, 1);
    await settle();
    sink.fail();
    await elapse(400);
    expect(queue.acks).toEqual([]);
    expect(sink.batches).toHaveLength(1);
    await elapse(200);
    expect(sink.batches).toHaveLength(2);
    sink.confirm();
    await settle();
    expect(ackedTags(queue)).toEqual([1]);
  });

  it('dead-letters a message that asked only once its dead-lettered receipt, with the reason, is confirmed', async () => {
    const { queue, sink, stream } = setupWithReceipts();
    queue.receiptIds.add('a');
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publishIds(['a', 'b']);
    await settle();
    expect(stream.nack(sub, 1, false)).toBe('dead-lettered');
    await settle();
    expect(queue.rejected).toEqual([]);
    expect(sink.all).toMatchObject([{ messageId: 'a', seq: 1, outcome: 'dead-lettered', reason: 'client-nack' }]);
    // A later cumulative ack does not ack it meanwhile.
    stream.ack(sub, 2);
    await settle();
    expect(ackedTags(queue)).toEqual([2]);
    sink.confirm();
    await settle();
    expect(queue.rejected).toEqual([{ id: 'a', requeue: false }]);
    expect(ackedTags(queue)).toEqual([2]);
  });

  it('sends the receipt again for a message redelivered at or below the mark, then acks it', async () => {
    const { queue, sink, stream } = setupWithReceipts();
    queue.receiptIds.add('a');
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publishIds(['a']);
    await settle();
    stream.ack(sub, 1);
    await settle();
    expect(sink.batches).toHaveLength(1);
    // The consumer is lost before the receipt is confirmed: RabbitMQ has the message back.
    queue.lose();
    sink.confirm();
    await elapse(50);
    expect(queue.acks).toEqual([]);
    expect(sink.batches).toHaveLength(2);
    expect(sink.batches[1]).toMatchObject([{ messageId: 'a', seq: 1, outcome: 'acked' }]);
    sink.confirm();
    await settle();
    expect(queue.acks).toEqual([{ tag: 1, multiple: false }]);
    expect(sub.seqs).toEqual([1]);
  });

  it('sends a dead-lettered receipt without a seq for an invalid message that asked, before rejecting it', async () => {
    const { queue, sink, stream } = setupWithReceipts({ maxMessageBytes: 8 });
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    // publish() names its messages m1000, m1001, ...: {"n":1000} is over 8 bytes, {"n":0} is not.
    const big = 'm1000';
    queue.receiptIds.add(big);
    queue.publish(1);
    queue.publishIds(['small']);
    await settle();
    expect(sink.all).toMatchObject([{ messageId: big, seq: null, epoch: null, outcome: 'dead-lettered', reason: 'too-large' }]);
    expect(queue.rejected).toEqual([]);
    expect(sub.seqs).toEqual([1]);
    sink.confirm();
    await settle();
    expect(queue.rejected).toEqual([{ id: big, requeue: false }]);
  });

  it('publishes nothing for messages that did not ask', async () => {
    const { queue, sink, stream } = setupWithReceipts();
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publish(5);
    await settle();
    expect(stream.nack(sub, 2, false)).toBe('dead-lettered');
    stream.ack(sub, 5);
    await settle();
    expect(sink.batches).toEqual([]);
    expect(queue.rejected).toHaveLength(1);
    expect(queue.unacked.size).toBe(0);
  });

  it('publishes a dead-lettered receipt only once the store holds the dead-letter request', async () => {
    const queue = new FakeQueue();
    const sink = new FakeReceiptSink();
    const memory = newMemory();
    let storeUp = false;
    const store = storeWith(memory, {
      deadLetter: async (user: string, epoch: string, seq: number) => {
        if (!storeUp) throw new Error('store down');
        return memory.deadLetter(user, epoch, seq);
      },
    });
    const stream = newStream(queue.factory, store, { prefetch: 10, receipts: sink });
    queue.receiptIds.add('a');
    const sub = new FakeSub(10);
    await done(stream.attach(sub, undefined));
    queue.publishIds(['a']);
    await settle();
    expect(stream.nack(sub, 1, false)).toBe('dead-lettered');
    await elapse(1_500);
    // Without the store's record, a relay that died after the receipt could ack the message later.
    expect(sink.batches).toEqual([]);
    expect(queue.rejected).toEqual([]);
    storeUp = true;
    await elapse(1_000);
    expect(sink.all).toMatchObject([{ messageId: 'a', outcome: 'dead-lettered', reason: 'client-nack' }]);
    sink.confirm();
    await settle();
    expect(queue.rejected).toEqual([{ id: 'a', requeue: false }]);
  });
});
