/**
 * Dead-letter requests a closing stream could not record in the store (the store was down, or the
 * channel died before RabbitMQ confirmed the reject), kept on this node for the user's next
 * stream.
 *
 * Without it such a request would be lost with its stream: the client, which treats the message
 * as done once it asked (and acks past it), resumes past the seq, and the next stream would take
 * the message for processed and ack it to RabbitMQ. With it:
 * - the user's next stream on this node in the same epoch takes the requests over before it
 *   reads the client's position (`take`): the message is rejected when it comes back;
 * - meanwhile the requests are written to the store every second until it takes them, so that a
 *   stream on another node learns of them too once the store is back (`assign` says so);
 * - requests of an epoch the store no longer knows are dropped: that numbering is gone, and the
 *   message comes again in the new one.
 */
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { SeqStore } from '../store/store.js';
import { backgroundClock, type Clock, type TimerHandle } from './background-clock.js';

export interface HandedOverRequest {
  seq: number;
  reason: string;
}

interface Pending {
  epoch: string;
  requests: Map<number, string>;
  retry: TimerHandle | undefined;
  writing: boolean;
}

const RETRY_MS = 1_000;

export class DeadLetterHandover {
  private readonly pending = new Map<string, Pending>();
  private readonly clock: Clock;

  constructor(private readonly options: { store: SeqStore; logger: Logger; clock?: Clock }) {
    this.clock = options.clock ?? backgroundClock;
  }

  /** Users with requests waiting (for diagnostics and tests). */
  get size(): number {
    return this.pending.size;
  }

  /** A stream of `user` closed with these requests unrecorded in `epoch`. */
  put(user: string, epoch: string, requests: readonly HandedOverRequest[]): void {
    if (requests.length === 0) return;
    let pending = this.pending.get(user);
    if (pending && pending.epoch !== epoch) {
      // The older epoch is gone, or this one is: either way one numbering's requests are kept.
      this.drop(user);
      pending = undefined;
    }
    if (!pending) {
      pending = { epoch, requests: new Map(), retry: undefined, writing: false };
      this.pending.set(user, pending);
    }
    for (const { seq, reason } of requests) pending.requests.set(seq, reason);
    this.write(user, pending);
  }

  /** The requests of `user` in `epoch`, for its next stream, which records them from now on. */
  take(user: string, epoch: string): HandedOverRequest[] {
    const pending = this.pending.get(user);
    if (!pending) return [];
    this.drop(user);
    if (pending.epoch !== epoch) return [];
    return [...pending.requests].map(([seq, reason]) => ({ seq, reason }));
  }

  /** Stops the background writes (the relay shuts down). */
  stop(): void {
    for (const user of [...this.pending.keys()]) this.drop(user);
  }

  private drop(user: string): void {
    this.pending.get(user)?.retry?.cancel();
    this.pending.delete(user);
  }

  /** Writes every request of `user` to the store, one after another; on a failure, again in a second. */
  private write(user: string, pending: Pending): void {
    if (pending.writing || pending.retry) return;
    pending.writing = true;
    background(
      this.writeAll(user, pending).then((done) => {
        pending.writing = false;
        if (this.pending.get(user) !== pending) return;
        if (done && pending.requests.size === 0) return this.drop(user);
        // Requests put meanwhile are written at once; after a failure, in a second.
        if (done) return this.write(user, pending);
        pending.retry = this.clock.setTimeout(() => {
          pending.retry = undefined;
          if (this.pending.get(user) === pending) this.write(user, pending);
        }, RETRY_MS);
      }),
      (error: unknown) => this.options.logger.error({ user, err: errorMessage(error) }, 'dead-letter handover failed'),
    );
  }

  private async writeAll(user: string, pending: Pending): Promise<boolean> {
    const { store, logger } = this.options;
    for (const seq of [...pending.requests.keys()]) {
      if (this.pending.get(user) !== pending) return true;
      try {
        const recorded = await store.deadLetter(user, pending.epoch, seq);
        // Recorded; or history no longer holds the seq (processed); or the epoch is gone.
        if (recorded === null) pending.requests.clear();
        else pending.requests.delete(seq);
      } catch (error) {
        logger.warn({ user, seq, err: errorMessage(error) }, 'could not record a handed-over dead-letter request; retrying');
        return false;
      }
    }
    return true;
  }
}
