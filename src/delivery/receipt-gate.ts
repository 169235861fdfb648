/**
 * Where the broker side of a stream settles messages that asked for a delivery receipt: the
 * broker ack (or reject) of such a message runs only once its receipt is confirmed (ReceiptOutbox),
 * and only while the consumer that holds it is still the stream's one.
 *
 * This module guarantees: `after` runs its settlement at once when the stream has no receipt sink
 * (receipts off), else after the confirm and never for a consumer that is gone (its tags name
 * nothing any more; RabbitMQ delivers the message again and the stream sends the receipt again);
 * `ackAfter` acks the messages it is given with one multiple ack when the ledger says that is exact.
 */
import type { RelayEvents } from '../events.js';
import type { ConsumerHandle } from './consumer.js';
import type { ConsumerSession } from './consumer-supervisor.js';
import type { ReceiptRequest } from './delivery-receipt.js';
import type { AwaitingReceipt, BrokerAck } from './inflight-ledger.js';
import type { ReceiptOutbox } from './receipt-outbox.js';

/** How long closing the consumer waits for receipts in flight (their messages are acked after them). */
const RECEIPT_WAIT_MS = 2_000;

export class ReceiptGate {
  constructor(
    private readonly outbox: ReceiptOutbox | undefined,
    /** The stream's consumer now. */
    private readonly current: () => ConsumerSession | undefined,
    private readonly events: RelayEvents | undefined,
  ) {}

  /** Whether receipts are sent at all (a sink is configured). */
  get enabled(): boolean {
    return this.outbox !== undefined;
  }

  get pendingCount(): number {
    return this.outbox?.pendingCount ?? 0;
  }

  /** Runs `settle` once the receipts `build` makes are confirmed, while `session` is the consumer. */
  after(session: ConsumerSession, build: (outbox: ReceiptOutbox) => ReceiptRequest[], settle: () => void): void {
    if (!this.outbox) return settle();
    this.outbox.send(build(this.outbox), () => session.live && this.current() === session, settle);
  }

  /** Publishes an `acked` receipt for each message, then acks them (RabbitMQ keeps them until then). */
  ackAfter(session: ConsumerSession, awaiting: AwaitingReceipt[]): void {
    const tags = awaiting.flatMap((entry) => entry.tags);
    this.after(
      session,
      (outbox) => awaiting.map(({ seq, messageId }) => outbox.receipt(messageId, seq, 'acked')),
      () => {
        const ack = session.ledger.release(tags);
        if (!ack || !session.handle) return;
        sendAck(session.handle, ack);
        this.events?.emit('acked', tags.length);
      },
    );
  }

  /** Gives the receipts in flight a moment (bounded), then publishes nothing more. */
  async close(): Promise<void> {
    await this.outbox?.close(RECEIPT_WAIT_MS);
  }
}

/** Sends a ledger's broker ack on a consumer. */
export function sendAck(handle: ConsumerHandle, ack: BrokerAck): void {
  if (ack.multiple) handle.ack(ack.tag, true);
  else for (const tag of ack.tags) handle.ack(tag, false);
}
