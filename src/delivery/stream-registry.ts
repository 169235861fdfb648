import { ErrorCode, RelayError } from '../errors.js';
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { settledWithin } from '../settle.js';
import type { SeqStore } from '../store/store.js';
import type { ConsumerFactory } from './consumer.js';
import type { ReceiptSink } from './delivery-receipt.js';
import type { ReplaySeal } from './replay-seal.js';
import type { NodeBus } from '../cluster/node-bus.js';
import { DeadLetterHandover } from './dead-letter-handover.js';
import { StreamClosedError, UserStream, type AttachResult, type ResumeRequest, type Subscriber } from './user-stream.js';

export interface StreamRegistryOptions {
  store: SeqStore;
  consumers: ConsumerFactory;
  prefetch: number;
  nackLimit: number;
  maxMessageBytes: number;
  /** See UserStreamOptions.replaySeal. */
  replaySeal?: ReplaySeal | undefined;
  /** See UserStreamOptions.receipts. */
  receipts?: ReceiptSink | undefined;
  /** See UserStreamOptions.lingerMs. */
  lingerMs?: number;
  /** See UserStreamOptions.storeAckIntervalMs. */
  storeAckIntervalMs?: number;
  logger: Logger;
  events?: RelayEvents;
  /** See UserStreamOptions.bus. */
  bus?: NodeBus;
  /** See UserStreamOptions.clusterHeartbeatMs. */
  clusterHeartbeatMs?: number;
}

/**
 * Decides, before anything else, whether `sub` may attach to `user`'s stream. A gate that says
 * no has already ended the connection its own way (close code, reason): the attach then rejects
 * with a RelayError that is not retryable and carries no work done.
 */
export type AttachGate = (user: string, sub: Subscriber) => boolean;

/** How long a new connection waits for the user's previous stream to release its consumer. */
const CLOSING_WAIT_MS = 10_000;

/** The user streams of this node: at most one per user, created on first attach, dropped when idle. */
export class StreamRegistry {
  private readonly streams = new Map<string, UserStream>();
  private gate: AttachGate | undefined;
  /** Dead-letter requests a closed stream left unrecorded, for the user's next stream. */
  private readonly handover: DeadLetterHandover;

  constructor(private readonly options: StreamRegistryOptions) {
    this.handover = new DeadLetterHandover({ store: options.store, logger: options.logger });
  }

  get size(): number {
    return this.streams.size;
  }

  get(user: string): UserStream | undefined {
    return this.streams.get(user);
  }

  values(): IterableIterator<UserStream> {
    return this.streams.values();
  }

  /** Installs the gate every later attach asks first (undefined: none). */
  setAttachGate(gate: AttachGate | undefined): void {
    this.gate = gate;
  }

  /** Attaches a connection to its user's stream, waiting out a stream that is closing. */
  async attach(user: string, sub: Subscriber, resume: ResumeRequest | undefined): Promise<{ stream: UserStream; result: AttachResult }> {
    if (this.gate && !this.gate(user, sub)) {
      throw new RelayError(ErrorCode.forbidden, 'the attach gate refused this connection', { retryable: false });
    }
    let warning: string | undefined;
    for (let attempt = 0; ; attempt += 1) {
      let stream = this.streams.get(user);
      if (stream?.closed) {
        // Its consumer must be gone before another starts (single active consumer; order). A
        // close the broker does not answer must not hold this connection's hello forever.
        const closed = await settledWithin(stream.close(), CLOSING_WAIT_MS);
        if (!closed) {
          throw new RelayError(
            ErrorCode.brokerUnavailable,
            `the previous consumer of this user has not closed within ${CLOSING_WAIT_MS} ms`,
            {
              retryable: true,
            },
          );
        }
        if (this.streams.get(user) === stream) this.streams.delete(user);
        // Another hello of this user may have waited too and created the next stream already:
        // look again, so that both join it (two streams would mean two consumers on the queue).
        continue;
      }
      if (!stream) {
        const created = new UserStream({
          ...this.options,
          user,
          handover: this.handover,
          onIdle: () => {
            if (this.streams.get(user) === created) this.streams.delete(user);
          },
        });
        this.streams.set(user, created);
        stream = created;
      }
      try {
        const result = await stream.attach(sub, resume);
        if (warning !== undefined) result.warning ??= warning;
        return { stream, result };
      } catch (error) {
        if (!(error instanceof StreamClosedError) || attempt >= 3) throw error;
        // The stream this attach found closed because of it (the store was behind the client):
        // the client is still told why, on the stream it joins next.
        warning ??= error.warning;
      }
    }
  }

  /**
   * Gives every stream's consumer up, keeping the connections (see UserStream.releaseConsumer):
   * another node with connections of the user becomes the active consumer before these close.
   */
  async releaseConsumers(): Promise<void> {
    await Promise.all([...this.streams.values()].map((stream) => stream.releaseConsumer()));
  }

  /** Releases every stream's consumer; their unacked messages return to RabbitMQ in order. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.streams.values()].map((stream) => stream.close()));
    this.streams.clear();
  }
}
