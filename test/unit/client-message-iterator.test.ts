import { describe, expect, it } from 'vitest';
import type { Consumer } from '../../src/client/delivery-pump.js';
import type { InboxMessage } from '../../src/client/message.js';
import { MessageIterator, ReleasedError } from '../../src/client/message-iterator.js';

function message(seq: number): InboxMessage {
  return { epoch: 'e', seq, id: `m${seq}`, ts: 0, redelivered: false, contentType: 'application/json', data: { seq } };
}

function iterator(): { it: MessageIterator; offer: (m: InboxMessage) => Promise<unknown>; state: { subscribed: boolean; ended: number } } {
  const state = { subscribed: false, ended: 0 };
  let consumer: Consumer | undefined;
  const it = new MessageIterator(
    (c) => {
      consumer = c;
      state.subscribed = true;
      return () => {
        state.subscribed = false;
      };
    },
    () => {
      state.ended += 1;
    },
  );
  return { it, offer: async (m) => consumer?.(m), state };
}

const outcome = (promise: Promise<unknown>): Promise<string> =>
  promise.then(
    () => 'processed',
    (error: unknown) => (error instanceof ReleasedError ? 'released' : 'failed'),
  );

describe('MessageIterator', () => {
  it('counts a message processed only when the loop asks for the next one', async () => {
    const { it, offer } = iterator();
    const first = outcome(offer(message(1)));
    const got = await it.next();
    expect(got).toEqual({ done: false, value: message(1) });
    let settled = false;
    const observed = first.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    const pending = it.next();
    expect(await first).toBe('processed');
    expect(await observed).toBe(true);
    const second = outcome(offer(message(2)));
    expect(await pending).toEqual({ done: false, value: message(2) });
    const third = it.next();
    expect(await second).toBe('processed');
    // Nothing more was offered: the loop's request for a third message waits until the iterator ends.
    expect(await it.return()).toEqual({ done: true, value: undefined });
    expect(await third).toEqual({ done: true, value: undefined });
  });

  it('releases the message in hand when the loop breaks, and unsubscribes once', async () => {
    const { it, offer, state } = iterator();
    const first = outcome(offer(message(1)));
    await it.next();
    expect(await it.return()).toEqual({ done: true, value: undefined });
    expect(await first).toBe('released');
    expect(state).toEqual({ subscribed: false, ended: 1 });
    expect(await outcome(offer(message(2)))).toBe('released');
  });

  it('works with for-await: break leaves the current message unprocessed', async () => {
    const { it, offer } = iterator();
    const first = outcome(offer(message(1)));
    const seen: number[] = [];
    for await (const m of it) {
      seen.push(m.seq);
      break;
    }
    expect(seen).toEqual([1]);
    expect(await first).toBe('released');
  });

  it('ends a waiting loop when the client closes, and rejects it when the client failed', async () => {
    const a = iterator();
    const waiting = a.it.next();
    a.it.end();
    expect(await waiting).toEqual({ done: true, value: undefined });

    const b = iterator();
    const failing = b.it.next();
    b.it.end(new Error('terminal close'));
    await expect(failing).rejects.toThrow('terminal close');
    expect(await b.it.next()).toEqual({ done: true, value: undefined });
  });
});
