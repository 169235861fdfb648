/**
 * Hands buffered messages to the consumers, one at a time, in arrival order.
 *
 * Guarantees: at most one item is processed at any moment (so consumers see messages strictly
 * in order); nothing is processed while no consumer is registered, nor after `stop()`.
 */
import type { InboxMessage } from './message.js';

/** A message consumer: an `on('message')` handler or an iterator. Resolving means "processed". */
export type Consumer = (message: InboxMessage) => unknown;

export class DeliveryPump<Item> {
  #buffer: Item[] = [];
  readonly #consumers = new Set<Consumer>();
  readonly #idleWaiters: Array<() => void> = [];
  #busy = false;
  #stopped = false;

  /** `process` is called for each item; it must not reject (a rejection is passed to `onError`). */
  constructor(
    private readonly process: (item: Item) => Promise<void>,
    private readonly onError: (error: unknown) => void,
  ) {}

  get buffered(): number {
    return this.#buffer.length;
  }

  push(item: Item): void {
    this.#buffer.push(item);
    this.#schedule();
  }

  /** Puts an item back at the head of the line (a consumer released it unprocessed). */
  unshift(item: Item): void {
    this.#buffer.unshift(item);
    this.#schedule();
  }

  /** Removes every buffered item matching `predicate`. */
  drop(predicate: (item: Item) => boolean): void {
    this.#buffer = this.#buffer.filter((item) => !predicate(item));
  }

  /** Registers a consumer; returns a function that removes it. */
  addConsumer(consumer: Consumer): () => void {
    this.#consumers.add(consumer);
    this.#schedule();
    return () => {
      this.#consumers.delete(consumer);
    };
  }

  /** Calls every consumer in registration order, awaiting each; the first rejection stops the round. */
  async dispatch(message: InboxMessage): Promise<void> {
    for (const consumer of [...this.#consumers]) await consumer(message);
  }

  /** No further items are started; the one in progress finishes. */
  stop(): void {
    this.#stopped = true;
    this.#buffer = [];
  }

  /** Resolves when no item is being processed. */
  whenIdle(): Promise<void> {
    return this.#busy ? new Promise((resolve) => this.#idleWaiters.push(resolve)) : Promise.resolve();
  }

  #schedule(): void {
    if (this.#busy || this.#stopped || this.#consumers.size === 0) return;
    const item = this.#buffer.shift();
    if (item === undefined) return;
    this.#busy = true;
    this.process(item)
      .catch(this.onError)
      .finally(() => {
        this.#busy = false;
        for (const resolve of this.#idleWaiters.splice(0)) resolve();
        this.#schedule();
      });
  }
}
