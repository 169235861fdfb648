/**
 * The producer's receipt stream (receipt-stream.ts) on a fake channel: when receipts are acked,
 * what a close during set-up leaves behind, and `next()` calls made at once.
 */
import { EventEmitter } from 'node:events';
import type { Channel, ConsumeMessage } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { ReceiptStream } from '../../src/amqp/receipt-stream.js';
import { ErrorCode } from '../../src/errors.js';

class FakeChannel extends EventEmitter {
  consumers = 0;
  closed = false;
  bindings: string[] = [];
  acked: number[] = [];
  deliver: ((message: ConsumeMessage | null) => void) | undefined;
  async assertExchange(): Promise<object> {
    return {};
  }
  async assertQueue(): Promise<object> {
    return {};
  }
  async bindQueue(_queue: string, _exchange: string, key: string): Promise<object> {
    this.bindings.push(key);
    return {};
  }
  async prefetch(): Promise<object> {
    return {};
  }
  async consume(_queue: string, deliver: (message: ConsumeMessage | null) => void): Promise<{ consumerTag: string }> {
    this.consumers += 1;
    this.deliver = deliver;
    return { consumerTag: 'c1' };
  }
  async cancel(): Promise<object> {
    this.consumers -= 1;
    return {};
  }
  async close(): Promise<void> {
    this.closed = true;
    this.emit('close');
  }
  ack(message: ConsumeMessage): void {
    this.acked.push(message.fields.deliveryTag);
  }
}

function receipt(tag: number): ConsumeMessage {
  const body = { messageId: `m${tag}`, user: 'alice', seq: tag, epoch: 'e', outcome: 'acked', at: 1, node: 'n' };
  return { content: Buffer.from(JSON.stringify(body)), fields: { deliveryTag: tag }, properties: {} } as unknown as ConsumeMessage;
}

const open = (channel: FakeChannel) => async () => channel as unknown as Channel;

describe('ReceiptStream', () => {
  it('acks a receipt when the next one is asked for, and leaves the one held at a break in the queue', async () => {
    const channel = new FakeChannel();
    const stream = new ReceiptStream(open(channel), { queue: 'q1', users: ['alice', 'bob'] });
    await stream.ready();
    expect(channel.bindings).toEqual(['alice', 'bob']);
    channel.deliver?.(receipt(1));
    channel.deliver?.(receipt(2));
    const seen: string[] = [];
    for await (const r of stream) {
      seen.push(r.messageId);
      if (seen.length === 2) break;
    }
    expect(seen).toEqual(['m1', 'm2']);
    expect(channel.acked).toEqual([1]);
    expect(channel.consumers).toBe(0);
    expect(channel.closed).toBe(true);
  });

  it('cancels the consumer and closes the channel when closed while the queue is still being declared', async () => {
    const channel = new FakeChannel();
    let give!: (channel: Channel) => void;
    const opening = new Promise<Channel>((resolve) => (give = resolve));
    const stream = new ReceiptStream(() => opening, { queue: 'q1' });
    const ready = stream.ready();
    const closing = stream.close();
    give(channel as unknown as Channel);
    await ready;
    await closing;
    expect(channel.consumers).toBe(0);
    expect(channel.closed).toBe(true);
    expect(await stream.next()).toEqual({ done: true, value: undefined });
  });

  it('answers next() calls made at once in turn, each acking the receipt before it', async () => {
    const channel = new FakeChannel();
    const stream = new ReceiptStream(open(channel), { queue: 'q1' });
    await stream.ready();
    const first = stream.next();
    const second = stream.next();
    // Both calls are waiting by now.
    await new Promise((resolve) => setImmediate(resolve));
    channel.deliver?.(receipt(1));
    channel.deliver?.(receipt(2));
    const [a, b] = await Promise.all([first, second]);
    expect([a.value?.messageId, b.value?.messageId]).toEqual(['m1', 'm2']);
    expect(channel.acked).toEqual([1]);
  });

  it('refuses an empty user list: it would bind nothing and read nothing', () => {
    const channel = new FakeChannel();
    expect(() => new ReceiptStream(open(channel), { queue: 'q1', users: [] })).toThrow(
      expect.objectContaining({ code: ErrorCode.invalidUserId }) as Error,
    );
  });
});
