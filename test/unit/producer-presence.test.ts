/** The producer library's `presence` refuses what it cannot answer before it touches Redis. */
import { describe, expect, it } from 'vitest';
import { Producer } from '../../src/amqp/producer.js';
import { ErrorCode } from '../../src/errors.js';

describe('Producer.presence', () => {
  it('needs the redis option, and says so', async () => {
    const producer = new Producer({ url: 'amqp://127.0.0.1:1' });
    try {
      await expect(producer.presence('alice')).rejects.toMatchObject({
        code: ErrorCode.config,
        message: expect.stringContaining('pass the `redis` option') as unknown,
      });
    } finally {
      await producer.close();
    }
  });

  it('refuses an invalid user id, in a list too, before it connects', async () => {
    // Nothing listens on port 1: a call that got as far as Redis would fail differently.
    const producer = new Producer({ url: 'amqp://127.0.0.1:1', redis: 'redis://127.0.0.1:1' });
    try {
      await expect(producer.presence('no such')).rejects.toMatchObject({ code: ErrorCode.invalidUserId });
      await expect(producer.presence(['alice', ''])).rejects.toMatchObject({ code: ErrorCode.invalidUserId });
      await expect(producer.presence([])).resolves.toEqual([]);
    } finally {
      await producer.close();
    }
  });
});
