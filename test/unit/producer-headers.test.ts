/** The producer library never sets a header of the relay and its operators (the replay mark above all). */
import { describe, expect, it } from 'vitest';
import { Producer } from '../../src/amqp/producer.js';
import { ErrorCode } from '../../src/errors.js';
import { REPLAY_HEADER, REPLAY_SEAL_HEADER } from '../../src/delivery/message-codec.js';

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
});
