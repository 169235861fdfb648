/**
 * `for await (const message of client)`. A message counts as processed, and is acked, when the
 * loop asks for the next one. Leaving the loop (break, return, throw) releases the message in
 * hand unprocessed: it stays first in line and goes to the next consumer.
 */
import type { Consumer } from './delivery-pump.js';
import type { InboxMessage } from './message.js';

/** Rejection a consumer uses to hand a message back unprocessed (not a failure of the message). */
export class ReleasedError extends Error {
  override readonly name = 'ReleasedError';
  constructor() {
    super('the consumer released the message unprocessed');
  }
}

interface Settle {
  resolve(): void;
  reject(error: unknown): void;
}

// Function-typed fields, not methods: they hold a promise's own resolve and reject, which need no `this`.
interface Waiter {
  readonly resolve: (result: IteratorResult<InboxMessage, undefined>) => void;
  readonly reject: (error: unknown) => void;
}

export class MessageIterator implements AsyncIterableIterator<InboxMessage, undefined> {
  readonly #unsubscribe: () => void;
  readonly #onEnd: () => void;
  #waiting: Waiter | undefined;
  #offered: { message: InboxMessage; settle: Settle } | undefined;
  #inHand: Settle | undefined;
  #done = false;
  #error: Error | undefined;

  /** `subscribe` registers the iterator's consumer; `onEnd` runs once when the iterator ends. */
  constructor(subscribe: (consumer: Consumer) => () => void, onEnd: () => void) {
    this.#onEnd = onEnd;
    this.#unsubscribe = subscribe((message) => this.#offer(message));
  }

  next(): Promise<IteratorResult<InboxMessage, undefined>> {
    const previous = this.#inHand;
    this.#inHand = undefined;
    previous?.resolve();
    const offered = this.#offered;
    if (offered) {
      this.#offered = undefined;
      this.#inHand = offered.settle;
      return Promise.resolve({ value: offered.message, done: false });
    }
    if (this.#done) return this.#finalResult();
    if (this.#waiting) return Promise.reject(new Error('next() called while a previous next() is pending'));
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
  }

  /** Called by `break`/`return`/`throw` in the loop: releases the message in hand. */
  return(): Promise<IteratorResult<InboxMessage, undefined>> {
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  /**
   * Ends the iteration (the client closes). The message in hand is released unprocessed; with
   * `error`, the pending or next `next()` rejects once.
   */
  end(error?: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#inHand?.reject(new ReleasedError());
    this.#inHand = undefined;
    this.#error = error;
    this.#unsubscribe();
    this.#onEnd();
    this.#offered?.settle.reject(new ReleasedError());
    this.#offered = undefined;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) this.#finalResult().then(waiting.resolve, waiting.reject);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  #finalResult(): Promise<IteratorResult<InboxMessage, undefined>> {
    const error = this.#error;
    this.#error = undefined;
    return error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error);
  }

  #offer(message: InboxMessage): Promise<void> {
    if (this.#done) return Promise.reject(new ReleasedError());
    return new Promise<void>((resolve, reject) => {
      const settle = { resolve, reject };
      const waiting = this.#waiting;
      if (waiting) {
        this.#waiting = undefined;
        this.#inHand = settle;
        waiting.resolve({ value: message, done: false });
      } else {
        this.#offered = { message, settle };
      }
    });
  }
}
