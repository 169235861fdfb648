import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ConnectionPool } from '../../src/amqp/connection-pool.js';
import { ReceiptPublisher } from '../../src/amqp/receipt-publisher.js';
import { RECEIPTS_EXCHANGE } from '../../src/amqp/topology.js';
import type { ReceiptRequest } from '../../src/delivery/delivery-receipt.js';
import { ErrorCode } from '../../src/errors.js';

interface Published {
  exchange: string;
  key: string;
  body: unknown;
  options: Record<string, unknown>;
  confirm: (error: unknown) => void;
}

/** A confirm channel that keeps each publish's confirm callback for the test to call. */
class FakeConfirmChannel {
  readonly published: Published[] = [];
  closed = 0;
  publish(exchange: string, key: string, body: Buffer, options: Record<string, unknown>, confirm: (error: unknown) => void): boolean {
    this.published.push({ exchange, key, body: JSON.parse(body.toString()) as unknown, options, confirm });
    return true;
  }
  once(): this {
    return this;
  }
  async close(): Promise<void> {
    this.closed += 1;
  }
}

function poolWith(channels: FakeConfirmChannel[], blocked?: string): { pool: ConnectionPool; opened: () => number } {
  let opened = 0;
  const pool = {
    blocked,
    openConfirmChannel: async () => channels[Math.min(opened++, channels.length - 1)],
  };
  return { pool: pool as unknown as ConnectionPool, opened: () => opened };
}

const receipt = (messageId: string, user = 'alice'): ReceiptRequest => ({
  messageId,
  user,
  seq: 3,
  epoch: 'e1',
  outcome: 'acked',
  at: 1_700_000_000_000,
});

describe('ReceiptPublisher', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('publishes a batch back to back to inbox.receipts, keyed by user, and resolves once every receipt is confirmed', async () => {
    const channel = new FakeConfirmChannel();
    const publisher = new ReceiptPublisher({ pool: poolWith([channel]).pool, timeoutMs: 1_000, nodeId: 'node-7' });
    let done = false;
    const publishing = publisher.publish([receipt('a'), receipt('b', 'bob')]).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(channel.published.map((p) => [p.exchange, p.key])).toEqual([
      [RECEIPTS_EXCHANGE, 'alice'],
      [RECEIPTS_EXCHANGE, 'bob'],
    ]);
    expect(channel.published[0]!.body).toEqual({ ...receipt('a'), node: 'node-7' });
    expect(channel.published[0]!.options).toMatchObject({ persistent: true, messageId: 'a', contentType: 'application/json' });
    expect(channel.published[0]!.options.mandatory).toBeUndefined();
    channel.published[0]!.confirm(null);
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toBe(false);
    channel.published[1]!.confirm(null);
    await publishing;
    expect(done).toBe(true);
  });

  it('rejects the batch when RabbitMQ refuses one receipt', async () => {
    const channel = new FakeConfirmChannel();
    const publisher = new ReceiptPublisher({ pool: poolWith([channel]).pool, timeoutMs: 1_000, nodeId: 'n' });
    const publishing = publisher.publish([receipt('a'), receipt('b')]);
    await vi.advanceTimersByTimeAsync(0);
    channel.published[0]!.confirm(null);
    channel.published[1]!.confirm(new Error('message nacked'));
    await expect(publishing).rejects.toMatchObject({ code: ErrorCode.publishNacked });
  });

  it('publishes the batch after a refusal on a new channel, and closes the refusing one once its confirms are in', async () => {
    const [first, second] = [new FakeConfirmChannel(), new FakeConfirmChannel()];
    const { pool, opened } = poolWith([first, second]);
    const publisher = new ReceiptPublisher({ pool, timeoutMs: 1_000, nodeId: 'n' });
    const publishing = publisher.publish([receipt('a'), receipt('b')]);
    await vi.advanceTimersByTimeAsync(0);
    first.published[0]!.confirm(new Error('message nacked'));
    await expect(publishing).rejects.toMatchObject({ code: ErrorCode.publishNacked });
    expect(first.closed).toBe(0);
    first.published[1]!.confirm(null);
    expect(first.closed).toBe(1);
    const again = publisher.publish([receipt('a')]);
    await vi.advanceTimersByTimeAsync(0);
    expect(opened()).toBe(2);
    expect(second.published).toHaveLength(1);
    second.published[0]!.confirm(null);
    await again;
  });

  it('rejects after timeoutMs without every confirm, and publishes the next batch on a new channel', async () => {
    const [first, second] = [new FakeConfirmChannel(), new FakeConfirmChannel()];
    const { pool, opened } = poolWith([first, second]);
    const publisher = new ReceiptPublisher({ pool, timeoutMs: 1_000, nodeId: 'n' });
    const publishing = publisher.publish([receipt('a')]);
    const failed = expect(publishing).rejects.toMatchObject({ code: ErrorCode.publishTimeout });
    await vi.advanceTimersByTimeAsync(1_000);
    await failed;
    expect(first.closed).toBe(1);
    const again = publisher.publish([receipt('a')]);
    await vi.advanceTimersByTimeAsync(0);
    expect(opened()).toBe(2);
    second.published[0]!.confirm(null);
    await again;
  });

  it('fails at once while RabbitMQ blocks publishers', async () => {
    const { pool, opened } = poolWith([new FakeConfirmChannel()], 'low on memory');
    const publisher = new ReceiptPublisher({ pool, timeoutMs: 1_000, nodeId: 'n' });
    await expect(publisher.publish([receipt('a')])).rejects.toMatchObject({ code: ErrorCode.brokerBlocked });
    expect(opened()).toBe(0);
  });
});
