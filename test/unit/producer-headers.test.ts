/**
 * The producer library never sets a header of the relay and its operators (the replay mark above
 * all), sets the receipt header only when asked, and refuses a messageId the relay would refuse.
 */
import { describe, expect, it, vi } from 'vitest';
import { Producer } from '../../src/amqp/producer.js';
import { ErrorCode } from '../../src/errors.js';
import { REPLAY_HEADER, REPLAY_SEAL_HEADER } from '../../src/delivery/message-codec.js';
import { RECEIPT_HEADER } from '../../src/delivery/delivery-receipt.js';

describe('Producer headers', () => {
  it('refuses x-inbox-relay-* headers before it touches the broker', async () => {
    // Nothing listens on port 1: a publish that got as far as the broker would fail differently.
    const producer = new Producer({ url: 'amqp://127.0.0.1:1' });
    try {
      for (const name of [REPLAY_HEADER, REPLAY_SEAL_HEADER, 'X-Inbox-Relay-Replay', 'x-inbox-relay-reason']) {
        await expect(producer.publish('alice', { n: 1 }, { headers: { [name]: 1 } }), name).rejects.toMatchObject({
          code: ErrorCode.invalidMessage,
          message: expect.stringContaining('reserved') as unknown,
        });
      }
    } finally {
      await producer.close();
    }
  });

  it('refuses a messageId the relay would dead-letter (empty, too long, control characters) before it touches the broker', async () => {
    const producer = new Producer({ url: 'amqp://127.0.0.1:1' });
    const publishRaw = vi.fn(async () => undefined);
    producer.publishRaw = publishRaw;
    try {
      for (const messageId of ['', 'x'.repeat(256), 'a\nb']) {
        await expect(producer.publish('alice', { n: 1 }, { messageId, receipt: true }), JSON.stringify(messageId)).rejects.toMatchObject({
          code: ErrorCode.invalidMessage,
        });
      }
      expect(publishRaw).not.toHaveBeenCalled();
      await producer.publish('alice', { n: 1 }, { messageId: 'x'.repeat(255) });
      expect(publishRaw).toHaveBeenCalledTimes(1);
    } finally {
      await producer.close();
    }
  });

  it("asks for a receipt with the inbox-receipt header, next to the caller's headers, and only when told", async () => {
    const producer = new Producer({ url: 'amqp://127.0.0.1:1' });
    const publishRaw = vi.fn(async () => undefined);
    producer.publishRaw = publishRaw;
    try {
      await producer.publish('alice', { n: 1 }, { messageId: 'a', receipt: true, headers: { trace: 't1' } });
      await producer.publish('alice', { n: 2 }, { messageId: 'b' });
      await producer.publish('alice', { n: 3 }, { messageId: 'c', receipt: false });
      const headers = publishRaw.mock.calls.map((call) => (call as unknown[])[3] as { headers?: Record<string, unknown> });
      expect(headers.map((properties) => properties.headers)).toEqual([{ trace: 't1', [RECEIPT_HEADER]: true }, undefined, undefined]);
    } finally {
      await producer.close();
    }
  });

  it('refuses a receipts queue of the broker or the relay, and invalid user ids, before it touches the broker', async () => {
    const producer = new Producer({ url: 'amqp://127.0.0.1:1' });
    try {
      for (const queue of ['', 'amq.gen-x', 'inbox.alice', 'inbox', 'x'.repeat(256)]) {
        expect(() => producer.receipts({ queue }), queue).toThrow(expect.objectContaining({ code: ErrorCode.topology }));
      }
      expect(() => producer.receipts({ queue: 'billing.receipts', users: ['ok', 'not ok'] })).toThrow(
        expect.objectContaining({ code: ErrorCode.invalidUserId }),
      );
    } finally {
      await producer.close();
    }
  });
});
