/**
 * What happens to each `msg` frame between the socket and the consumers: dedupe against the
 * position, dispatch, ack after success, and the nack policy after a failure.
 *
 * Guarantees:
 * - a frame is handed to consumers only when its seq is `lastSeq + 1` of the current epoch
 *   (see PositionTracker), one at a time, in arrival order;
 * - the position advances, and the seq is acked, only after every consumer resolved;
 * - a failure is nacked on the connection the frame came on: `requeue` drops the frames
 *   buffered after it and waits for the relay's replay; `dead-letter` counts the seq as done;
 * - a seq ahead of the position that no replay explains replaces the connection (the relay
 *   then resumes from the position), so a lost frame cannot stall delivery.
 */
import { ErrorFrameCode, type MsgFrame } from '../protocol/frame-types.js';
import type { Connection } from './connection.js';
import { DeliveryPump, type Consumer } from './delivery-pump.js';
import type { TypedEmitter } from './emitter.js';
import { ClientErrorCode, InboxClientError } from './errors.js';
import type { ClientStats, InboxClientEvents } from './events.js';
import { toInboxMessage, type InboxMessage } from './message.js';
import { ReleasedError } from './message-iterator.js';
import { DEFAULT_MAX_REQUEUES, requeueUpTo, type NackDecision, type NackPolicy } from './nack-policy.js';
import type { PositionTracker } from './position-tracker.js';

export type MutableStats = { -readonly [K in keyof ClientStats]: ClientStats[K] };

interface PendingMessage {
  readonly frame: MsgFrame;
  readonly connection: Connection;
  /** The connection's epoch when the frame arrived. */
  readonly epoch: string;
}

interface Rewind {
  readonly connection: Connection;
  readonly seq: number;
  readonly message: InboxMessage;
}

export interface DeliveryFlowOptions {
  readonly tracker: PositionTracker;
  readonly policy: NackPolicy;
  readonly stats: MutableStats;
  readonly events: TypedEmitter<InboxClientEvents>;
  /** Whether `connection` is the client's current one (frames of older ones are never acted on). */
  readonly isCurrent: (connection: Connection) => boolean;
}

const FALLBACK_POLICY = requeueUpTo(DEFAULT_MAX_REQUEUES);

export class DeliveryFlow {
  readonly #options: DeliveryFlowOptions;
  readonly #pump: DeliveryPump<PendingMessage>;
  /** A requeue-nack being replayed: until its seq comes again, later seqs on that connection are expected. */
  #rewind: Rewind | undefined;

  constructor(options: DeliveryFlowOptions) {
    this.#options = options;
    this.#pump = new DeliveryPump(
      (item) => this.#process(item),
      (cause) => this.#emitError(ClientErrorCode.handlerFailed, 'internal delivery error', cause),
    );
  }

  /** Registers a consumer (a handler or an iterator); returns a function that removes it. */
  addConsumer(consumer: Consumer): () => void {
    return this.#pump.addConsumer(consumer);
  }

  receive(connection: Connection, frame: MsgFrame): void {
    this.#options.stats.received += 1;
    const epoch = connection.epoch;
    if (epoch !== undefined) this.#pump.push({ frame, connection, epoch });
  }

  /** The relay reset the numbering on `connection`: frames of the old numbering are dropped. */
  reset(connection: Connection, epoch: string): void {
    if (this.#rewind?.connection === connection) this.#rewind = undefined;
    this.#pump.drop((item) => item.connection === connection && item.epoch !== epoch);
  }

  /** `connection` ended: what it delivered and nobody handled yet comes again after resume. */
  connectionGone(connection: Connection): void {
    if (this.#rewind?.connection === connection) this.#rewind = undefined;
    this.#pump.drop((item) => item.connection === connection);
  }

  /**
   * The relay refused a requeue (RELAY_ERR_NACK_LIMIT) and dead-lettered the seq instead. The
   * seq counts as dead-lettered and the connection is replaced, so the client resumes right after
   * it (the relay also resends what followed it; resuming does not depend on that).
   */
  serverError(connection: Connection, code: string, error: InboxClientError): void {
    const rewind = this.#rewind;
    if (code !== ErrorFrameCode.nackLimit || rewind?.connection !== connection) return;
    this.#rewind = undefined;
    const { tracker, stats, events } = this.#options;
    const { epoch, seq } = rewind.message;
    const attempts = tracker.failuresOf(seq);
    if (tracker.advance(epoch, seq)) {
      stats.deadLettered += 1;
      events.emit('deadLetter', { message: rewind.message, error, attempts });
    }
    connection.abandon('resuming after a dead-lettered message');
  }

  /** No further messages are dispatched; the one in progress finishes. */
  stop(): void {
    this.#pump.stop();
  }

  /** Resolves when no message is being handled. */
  whenIdle(): Promise<void> {
    return this.#pump.whenIdle();
  }

  async #process(item: PendingMessage): Promise<void> {
    const { frame, connection, epoch } = item;
    const { tracker, stats, isCurrent } = this.#options;
    switch (tracker.classify(epoch, frame.seq)) {
      case 'duplicate':
        stats.duplicates += 1;
        // The relay counts it as unacked until it is acked on this connection.
        connection.acknowledge(frame.seq);
        return;
      case 'stale':
        stats.outOfSequence += 1;
        return;
      case 'ahead':
        stats.outOfSequence += 1;
        if (isCurrent(connection) && this.#rewind?.connection !== connection) this.#sequenceGap(connection, frame.seq);
        return;
      case 'accept':
        break;
    }
    if (this.#rewind?.connection === connection) this.#rewind = undefined;
    const message = toInboxMessage(frame, epoch, tracker.failuresOf(frame.seq) > 0);
    try {
      await this.#pump.dispatch(message);
    } catch (error) {
      if (error instanceof ReleasedError) {
        if (isCurrent(connection)) this.#pump.unshift(item);
      } else {
        this.#failed(connection, message, error);
      }
      return;
    }
    if (tracker.advance(epoch, frame.seq)) {
      stats.processed += 1;
      connection.acknowledge(frame.seq);
    }
  }

  #sequenceGap(connection: Connection, seq: number): void {
    const expected = (this.#options.tracker.position?.lastSeq ?? 0) + 1;
    this.#emitError(ClientErrorCode.sequenceGap, `expected seq ${expected}, got ${seq}; reconnecting to resume`);
    connection.abandon('sequence gap');
  }

  #failed(connection: Connection, message: InboxMessage, error: unknown): void {
    const { tracker, stats, isCurrent } = this.#options;
    const { epoch, seq } = message;
    if (tracker.classify(epoch, seq) !== 'accept') return;
    const attempt = tracker.recordFailure(seq);
    this.#emitError(ClientErrorCode.handlerFailed, `a consumer failed on seq ${seq} (attempt ${attempt})`, error);
    // Without the connection it came on, the message comes again after resume; the count stays.
    if (!isCurrent(connection) || !connection.isOpen) return;
    if (this.#decide(message, error, attempt) === 'requeue') {
      if (!connection.nack(seq, true)) return;
      stats.requeued += 1;
      this.#rewind = { connection, seq, message };
      this.#pump.drop((pending) => pending.connection === connection && pending.frame.seq > seq);
      return;
    }
    if (!connection.nack(seq, false)) return;
    stats.deadLettered += 1;
    // Dead-lettered is done: the position moves past it, and the ack frees its window slot.
    if (tracker.advance(epoch, seq)) connection.acknowledge(seq);
    this.#options.events.emit('deadLetter', { message, error, attempts: attempt });
  }

  #decide(message: InboxMessage, error: unknown, attempt: number): NackDecision {
    const failure = { message, error, attempt };
    try {
      const decision = this.#options.policy(failure);
      if (decision === 'requeue' || decision === 'dead-letter') return decision;
    } catch (cause) {
      this.#emitError(ClientErrorCode.handlerFailed, 'the nack policy threw; using the default policy', cause);
    }
    return FALLBACK_POLICY(failure);
  }

  #emitError(code: string, message: string, cause?: unknown): void {
    this.#options.events.emit('error', new InboxClientError(code, message, { cause, temporary: true }));
  }
}
