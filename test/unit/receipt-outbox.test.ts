import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backgroundClock } from '../../src/delivery/background-clock.js';
import type { ReceiptRequest } from '../../src/delivery/delivery-receipt.js';
import { ReceiptOutbox, receiptRetryDelayMs } from '../../src/delivery/receipt-outbox.js';
import { silentLogger } from '../../src/log.js';
import { FakeReceiptSink, elapse, settle } from '../helpers/delivery-fakes.js';

function receipt(seq: number): ReceiptRequest {
  return { messageId: `m${seq}`, user: 'u1', seq, epoch: 'e1', outcome: 'acked', at: 1 };
}

function outboxWith(sink: FakeReceiptSink): ReceiptOutbox {
  return new ReceiptOutbox({ user: 'u1', epoch: () => 'e1', sink, clock: backgroundClock, logger: silentLogger() });
}

describe('ReceiptOutbox', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('publishes the receipts handed over in one turn as one batch', async () => {
    const sink = new FakeReceiptSink();
    const outbox = outboxWith(sink);
    const settled: number[] = [];
    outbox.send(
      [receipt(1), receipt(2)],
      () => true,
      () => settled.push(1),
    );
    outbox.send(
      [receipt(3)],
      () => true,
      () => settled.push(3),
    );
    await settle();
    expect(sink.batches.map((batch) => batch.map((r) => r.seq))).toEqual([[1, 2, 3]]);
    expect(settled).toEqual([]);
    sink.confirm();
    await settle();
    expect(settled).toEqual([1, 3]);
    expect(outbox.pendingCount).toBe(0);
  });

  it('drops, and no longer counts, a batch that fails after stop(): settled() resolves', async () => {
    const sink = new FakeReceiptSink();
    const outbox = outboxWith(sink);
    let settled = 0;
    outbox.send(
      [receipt(1)],
      () => true,
      () => (settled += 1),
    );
    await settle();
    outbox.stop();
    sink.fail();
    await settle();
    expect(settled).toBe(0);
    expect(outbox.pendingCount).toBe(0);
    let done = false;
    outbox.settled().then(
      () => (done = true),
      () => undefined,
    );
    await settle();
    expect(done).toBe(true);
  });

  it('never settles a group before its batch is confirmed, and publishes a failed batch again after a backoff', async () => {
    const sink = new FakeReceiptSink();
    const outbox = outboxWith(sink);
    let settled = 0;
    outbox.send(
      [receipt(1)],
      () => true,
      () => (settled += 1),
    );
    await settle();
    sink.fail();
    await settle();
    expect(settled).toBe(0);
    expect(sink.batches).toHaveLength(1);
    await elapse(receiptRetryDelayMs(1) - 10);
    expect(sink.batches).toHaveLength(1);
    await elapse(20);
    expect(sink.batches).toHaveLength(2);
    sink.fail();
    await settle();
    // The second failure in a row waits twice as long.
    await elapse(receiptRetryDelayMs(2) - 10);
    expect(sink.batches).toHaveLength(2);
    await elapse(20);
    expect(sink.batches).toHaveLength(3);
    sink.confirm();
    await settle();
    expect(settled).toBe(1);
    expect(sink.all.map((r) => r.seq)).toEqual([1, 1, 1]);
  });

  it('caps the backoff at 10 s', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(receiptRetryDelayMs)).toEqual([500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
  });

  it('drops a group whose consumer is gone, before publishing it and after its confirm', async () => {
    const sink = new FakeReceiptSink();
    const outbox = outboxWith(sink);
    let live = true;
    let settled = 0;
    outbox.send(
      [receipt(1)],
      () => live,
      () => (settled += 1),
    );
    await settle();
    live = false;
    sink.confirm();
    await settle();
    expect(settled).toBe(0);
    outbox.send(
      [receipt(2)],
      () => false,
      () => (settled += 1),
    );
    await settle();
    expect(sink.batches).toHaveLength(1);
    expect(outbox.pendingCount).toBe(0);
  });

  it('does not hold a group back behind another batch still waiting for its confirm', async () => {
    const sink = new FakeReceiptSink();
    const outbox = outboxWith(sink);
    const settled: number[] = [];
    outbox.send(
      [receipt(1)],
      () => true,
      () => settled.push(1),
    );
    await settle();
    outbox.send(
      [receipt(2)],
      () => true,
      () => settled.push(2),
    );
    await settle();
    expect(sink.batches).toHaveLength(2);
    sink.fail();
    sink.confirm();
    await settle();
    expect(settled).toEqual([2]);
  });

  it('after stop, publishes nothing more and settled() resolves', async () => {
    const sink = new FakeReceiptSink();
    const outbox = outboxWith(sink);
    let settled = 0;
    outbox.send(
      [receipt(1)],
      () => true,
      () => (settled += 1),
    );
    await settle();
    sink.fail();
    await settle();
    outbox.stop();
    await outbox.settled();
    await elapse(20_000);
    expect(sink.batches).toHaveLength(1);
    expect(settled).toBe(0);
  });
});
