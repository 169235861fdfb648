/**
 * The RabbitMQ side of one user's stream: its consumer, the numbering of what the consumer
 * delivers, dead-letter requests, and the broker acks that follow the stream's acked mark.
 *
 * This module guarantees:
 * - a delivery is held (and sent to connections) only once the store numbered it in the
 *   stream's epoch; one at or below the acked mark is acked at once without being held;
 * - RabbitMQ is acked exactly for the held messages at or below the acked mark, once per turn
 *   of the event loop, never for a message with a dead-letter request (that one is rejected as
 *   soon as the consumer holds it);
 * - a lost consumer's messages and numbering are dropped with it (its delivery tags name
 *   nothing on another channel): RabbitMQ delivers them again to the next consumer;
 * - a message that asked for a delivery receipt is acked or rejected (dead-lettered) only once
 *   RabbitMQ confirmed its receipt (ReceiptOutbox): every path, including the redelivery of a
 *   message at or below the mark, which therefore sends its receipt again (at least once).
 *   Messages that did not ask are acked as before, never waiting on another's receipt.
 */
import { errorMessage } from '../errors.js';
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { settledWithin } from '../settle.js';
import type { SeqStore } from '../store/store.js';
import type { Clock } from './background-clock.js';
import type { ReceiptSink } from './delivery-receipt.js';
import type { InvalidMessageCode } from './message-codec.js';
import { ReceiptGate, sendAck } from './receipt-gate.js';
import { ReceiptOutbox } from './receipt-outbox.js';
import type { ConsumerCallbacks, ConsumerFactory, Delivery } from './consumer.js';
import { ConsumerSupervisor, type ConsumerSession } from './consumer-supervisor.js';
import { DeadLetterIntents } from './dead-letter-intents.js';
import type { NumberedEntry } from '../cluster/bus-message.js';
import type { HeldMessage } from './inflight-ledger.js';
import { NumberingIntake, type Numbered } from './numbering-intake.js';
import type { ReplayRefusal, ReplaySeal } from './replay-seal.js';

/** The stream's numbering, as this side reads and extends it. */
export interface StreamNumbering {
  readonly epoch: string;
  /** The highest seq numbered so far (raised here as deliveries are numbered). */
  head: number;
  /**
   * The highest seq RabbitMQ may be acked up to: some client acked it, and (with other nodes) the
   * store was asked for dead-letter requests up to it (see UserStream.raiseBrokerMark).
   */
  readonly brokerAckMark: number;
}

export interface BrokerSideOptions {
  user: string;
  store: SeqStore;
  consumers: ConsumerFactory;
  prefetch: number;
  maxMessageBytes: number;
  /** Checks the seal of replayed dead letters; undefined: no replay header is honoured. */
  replaySeal: ReplaySeal | undefined;
  /** Where delivery receipts go; undefined: none is sent, and messages that ask are settled as the others. */
  receipts: ReceiptSink | undefined;
  logger: Logger;
  clock: Clock;
  events: RelayEvents | undefined;
  restartDelayMs: ((attempt: number) => number) | undefined;
  numbering: StreamNumbering;
  /** New seqs are held (these, in numbering order): connections may send them. */
  onNumbered(held: NumberedEntry[]): void;
  /** The store no longer has the stream's numbering. */
  onEpochGone(): void;
  /** The consumer was lost; its messages went back to the queue. */
  onLost(reason: string): void;
  /** Delivery can go on (a consumer started, or the store numbered again). */
  onHealthy(): void;
  /** The store failed to number a batch (it is kept and retried). */
  onStoreDown(): void;
  /** A dead-letter request reached the store, or was dropped (the acked mark may be written past it now). */
  onRequestStored(): void;
  /** A dead-letter request of a client on this node reached the store (other nodes may be told). */
  onIntentStored(seq: number, reason: string): void;
}

export class BrokerSide {
  private readonly supervisor: ConsumerSupervisor;
  /** Numbers the current consumer's deliveries (a new one per consumer). */
  private intake: NumberingIntake | undefined;
  readonly intents: DeadLetterIntents;
  /** Set while a broker ack is scheduled for the end of this turn of the event loop. */
  private ackScheduled = false;
  /** Settles messages that asked for a receipt once it is confirmed. */
  private readonly receipts: ReceiptGate;

  constructor(private readonly options: BrokerSideOptions) {
    const { user, store, logger, clock, numbering } = options;
    const sink = options.receipts;
    const outbox = sink && new ReceiptOutbox({ user, epoch: () => numbering.epoch, sink, clock, logger, events: options.events });
    this.receipts = new ReceiptGate(outbox, () => this.supervisor.session, options.events);
    this.intents = new DeadLetterIntents({
      user,
      store,
      logger,
      clock,
      epoch: () => numbering.epoch,
      onStored: (seq) => {
        options.onIntentStored(seq, this.intents.reason(seq));
        this.rejectHeld(seq);
        options.onRequestStored();
      },
      onDropped: () => {
        // Processed after all: ack it to RabbitMQ, and let the store's mark pass it.
        this.scheduleAck();
        options.onRequestStored();
      },
      onEpochGone: () => options.onEpochGone(),
    });
    this.supervisor = new ConsumerSupervisor({
      user,
      prefetch: options.prefetch,
      consumers: options.consumers,
      logger,
      clock,
      ...(options.restartDelayMs ? { restartDelayMs: options.restartDelayMs } : {}),
      wire: (session) => this.wire(session),
      onStarted: () => options.onHealthy(),
    });
  }

  get hasConsumer(): boolean {
    return this.supervisor.session !== undefined;
  }

  /** Whether this node's consumer is the queue's active one (it received a delivery): this node owns the user. */
  get isOwner(): boolean {
    return this.supervisor.session?.active === true;
  }

  /** Seqs delivered by RabbitMQ and not yet acked to it. */
  get inflightCount(): number {
    return this.supervisor.session?.ledger.size ?? 0;
  }

  /** Starts the consumer if there is none. Rejects when it cannot start (or after `stop`). */
  async start(): Promise<void> {
    await this.supervisor.ensure();
  }

  restartLater(): void {
    this.supervisor.restartLater();
  }

  /** Numbers and restarts now instead of at the next retry (a dependency came back). */
  retryNow(restart: boolean): void {
    this.intake?.retryNow();
    if (restart) this.supervisor.retryNow();
  }

  /** The message the consumer holds for `seq`, if it does. */
  held(seq: number): HeldMessage | undefined {
    return this.supervisor.session?.ledger.get(seq);
  }

  /** A client asked to dead-letter `seq` (kept until RabbitMQ took it; see DeadLetterIntents). */
  deadLetter(seq: number, reason: string): void {
    this.intents.add(seq, reason);
    // Held here: rejected now, whether or not the store took the request yet (it is kept here
    // until the reject is confirmed, and the store's copy covers a channel lost before that).
    this.rejectHeld(seq);
  }

  /**
   * A client on another node asked to dead-letter `seq` and the store holds the request: if this
   * consumer holds the message, it is rejected (never acked, whatever the mark).
   */
  peerDeadLetter(seq: number, reason: string): void {
    if (!this.supervisor.session?.ledger.has(seq)) return;
    this.intents.known(seq, reason);
    this.rejectHeld(seq);
  }

  /** The seqs in (`after`, `upTo`] the consumer holds with no dead-letter request known here. */
  heldBetween(after: number, upTo: number): number[] {
    const ledger = this.supervisor.session?.ledger;
    if (!ledger) return [];
    return ledger.seqs().filter((seq) => seq > after && seq <= upTo && !this.intents.has(seq));
  }

  /** The acked mark moved: RabbitMQ is acked at the end of this turn (acks of one burst: one ack). */
  scheduleAck(): void {
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => {
      this.ackScheduled = false;
      this.ackUpToMark();
    });
  }

  /**
   * Acks every held message at or below the acked mark, except those to dead-letter; those that
   * asked for a receipt once it is confirmed (one batch of receipts, then one ack, for a burst).
   */
  ackUpToMark(): void {
    const session = this.supervisor.session;
    if (!session?.handle) return;
    const settled = session.ledger.settleUpTo(this.options.numbering.brokerAckMark, (seq) => this.intents.has(seq));
    const now = this.options.clock.now();
    for (const ts of settled.timestamps) this.options.events?.emit('delivery-latency', now - ts);
    if (settled.receipts.length > 0) this.receipts.ackAfter(session, settled.receipts);
    if (!settled.ack) return;
    sendAck(session.handle, settled.ack);
    this.options.events?.emit('acked', settled.count);
  }

  /** No consumer starts from now on; what was delivered is numbered, for at most `timeoutMs`. */
  async stop(numberFirstMs: number): Promise<void> {
    this.supervisor.stop();
    if (this.intake && this.supervisor.session && numberFirstMs > 0) await settledWithin(this.intake.drain(), numberFirstMs);
    this.intake?.stop();
    this.intents.stop();
  }

  /**
   * Closes the consumer's channel: its unacked messages return to the queue in order. Receipts in
   * flight get a moment first, so that their messages are acked rather than sent again.
   */
  async close(): Promise<void> {
    await this.receipts.close();
    await this.supervisor.close();
  }

  /** Diagnostics for the stream's snapshot. */
  snapshot(): Record<string, unknown> {
    const session = this.supervisor.session;
    return {
      consumer: session !== undefined,
      starting: this.supervisor.isStarting,
      restartScheduled: this.supervisor.restartScheduled,
      restartAttempt: this.supervisor.restartAttempt,
      inflight: session?.ledger.seqs() ?? [],
      outstanding: session?.ledger.outstandingCount ?? 0,
      pending: this.intake?.pendingCount ?? 0,
      receiptsPending: this.receipts.pendingCount,
      assigning: this.intake?.busy ?? false,
      deadLetterIntents: this.intents.size,
    };
  }

  /** Wires a new consumer: its own intake numbers its deliveries. */
  private wire(session: ConsumerSession): ConsumerCallbacks {
    const { user, store, maxMessageBytes, replaySeal, logger, clock, numbering } = this.options;
    const intake = new NumberingIntake(
      {
        user,
        store,
        maxMessageBytes,
        replaySeal,
        logger,
        clock,
        onReplayRefused: (delivery, reason) => this.replayRefused(delivery, reason),
        position: () => ({ epoch: numbering.epoch, seen: numbering.head }),
        onNumbered: (batch) => this.accept(session, batch),
        onInvalid: (delivery, reason, code, receiptFor) => this.rejectInvalid(session, delivery, reason, code, receiptFor),
        onEpochGone: () => this.options.onEpochGone(),
        onStoreHealth: (up) => {
          if (!up) this.options.onStoreDown();
          else if (this.supervisor.session) this.options.onHealthy();
        },
      },
      session.ready,
    );
    this.intake?.stop();
    this.intake = intake;
    return {
      onDelivery: (delivery) => {
        if (!session.active) {
          session.active = true;
          this.options.events?.emit('ownership-gained');
          logger.debug({ user }, 'consumer is the active one');
        }
        session.ledger.received(delivery.tag);
        intake.push(delivery);
      },
      onLost: (reason) => {
        intake.stop();
        this.options.events?.emit('consumer-lost', reason);
        this.options.onLost(reason);
      },
    };
  }

  private accept(session: ConsumerSession, batch: Numbered[]): void {
    const { numbering } = this.options;
    const held: NumberedEntry[] = [];
    for (const { delivery, seq, deadLetter, fragment, ts, receipt: asked } of batch) {
      // Only with a sink: without one a message that asks is settled as any other.
      const receipt = this.receipts.enabled ? asked : undefined;
      const message = { fragment, redelivered: delivery.redelivered, ts, receipt };
      if (deadLetter) this.intents.known(seq);
      if (this.intents.has(seq)) {
        // Rejected, never acked, whatever the mark.
        session.ledger.hold(seq, delivery.tag, message);
        this.rejectHeld(seq);
        continue;
      }
      if (seq <= numbering.brokerAckMark) {
        // A client already processed this seq in this epoch: finish it without sending it again
        // (its receipt first, again: the first one may not have been confirmed before the ack was lost).
        const finish = (): void => {
          session.ledger.settled(delivery.tag);
          session.handle?.ack(delivery.tag, false);
        };
        if (receipt === undefined) finish();
        else this.receipts.after(session, (outbox) => [outbox.receipt(receipt, seq, 'acked')], finish);
        continue;
      }
      session.ledger.hold(seq, delivery.tag, message);
      held.push({ seq, fragment, redelivered: delivery.redelivered });
      if (seq > numbering.head) numbering.head = seq;
    }
    this.options.onNumbered(held);
  }

  private rejectInvalid(
    session: ConsumerSession,
    delivery: Delivery,
    reason: string,
    code: InvalidMessageCode,
    receiptFor: string | undefined,
  ): void {
    if (receiptFor !== undefined && this.receipts.enabled) {
      this.receipts.after(
        session,
        (outbox) => [outbox.receipt(receiptFor, null, 'dead-lettered', code)],
        () => this.rejectInvalid(session, delivery, reason, code, undefined),
      );
      return;
    }
    session.ledger.settled(delivery.tag);
    session.handle?.reject(delivery.tag, false, code);
    this.options.events?.emit('dead-lettered', code);
    this.options.logger.warn({ user: this.options.user, reason: code, detail: reason }, 'invalid message dead-lettered');
  }

  /**
   * A message claimed to be an operator's replay without a valid seal: it is numbered by its
   * messageId (a copy of one the user got is not delivered again). Counted and logged, since it
   * is either a producer setting a header it must not set or relays and CLI with different keys.
   */
  private replayRefused(delivery: Delivery, reason: ReplayRefusal): void {
    this.options.events?.emit('replay-refused', reason);
    const messageId = typeof delivery.messageId === 'string' ? delivery.messageId : undefined;
    this.options.logger.warn({ user: this.options.user, messageId, reason }, 'replay header without a valid seal ignored');
  }

  /**
   * Rejects a message a client asked to dead-letter, if the consumer holds it now; one that asked
   * for a receipt once the store holds the request and its `dead-lettered` receipt is confirmed
   * (held back from acks meanwhile).
   */
  private rejectHeld(seq: number): void {
    const session = this.supervisor.session;
    const entry = session?.ledger.get(seq);
    if (!session?.handle || !entry) return;
    const reason = this.intents.reason(seq);
    if (entry.receipt === undefined) return this.rejectTags(session, seq, session.ledger.take(seq), reason);
    // Its receipt waits for the store to hold the request (`onStored` comes back here): a relay
    // that dies after the receipt then still dead-letters the message when RabbitMQ redelivers it,
    // instead of taking a resume past it for processed and acking what the receipt says is dead.
    if (!this.intents.isStored(seq)) return;
    session.ledger.detach(seq);
    const messageId = entry.receipt;
    this.receipts.after(
      session,
      (outbox) => [outbox.receipt(messageId, seq, 'dead-lettered', reason)],
      () => {
        session.ledger.release(entry.tags);
        this.rejectTags(session, seq, entry.tags, reason);
      },
    );
  }

  private rejectTags(session: ConsumerSession, seq: number, tags: number[], reason: string): void {
    const handle = session.handle;
    if (!handle) return;
    for (const tag of tags) handle.reject(tag, false, reason);
    this.options.events?.emit('dead-lettered', reason);
    this.options.logger.info({ user: this.options.user, seq, reason }, 'message dead-lettered');
    handle.sync().then(
      () => {
        this.intents.done(seq);
        // A request the store had not taken no longer holds the store's acked mark back.
        this.options.onRequestStored();
      },
      // The channel died under the reject: RabbitMQ has the message back and delivers it again,
      // and the request (still in the store) rejects it then.
      (error: unknown) =>
        this.options.logger.info({ user: this.options.user, seq, err: errorMessage(error) }, 'reject not confirmed; kept'),
    );
  }
}
