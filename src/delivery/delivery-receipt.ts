/**
 * Delivery receipts: what a producer asks for with the `inbox-receipt` header, and the receipt the
 * relay publishes to `inbox.receipts` once the message's fate is settled. No I/O.
 *
 * This module guarantees:
 * - asking costs one header lookup per message: `asksForReceipt` reads one property and nothing
 *   else, so messages that do not ask pay nothing more;
 * - a receipt always names the message by its producer's `messageId` (a message that asks without
 *   one is dead-lettered instead, `receipt-without-message-id`), and its JSON encoding is the one
 *   `parseReceipt` accepts: what the relay writes, the producer library reads back, field by field.
 */
import { z } from 'zod';

/**
 * The header a producer sets to ask for a receipt (`true`, `"true"` or `1`). Not under the
 * reserved `x-inbox-relay-` prefix: producers set it, and the producer library refuses those.
 */
export const RECEIPT_HEADER = 'inbox-receipt';

/** How a message ended: a connection of the user acked it, or the relay dead-lettered it. */
export type ReceiptOutcome = 'acked' | 'dead-lettered';

/** A receipt as the relay publishes it to `inbox.receipts` (routing key = the user id). */
export interface DeliveryReceipt {
  /** The producer's messageId. */
  messageId: string;
  user: string;
  /** The message's seq in `epoch`; null for a message dead-lettered before it was numbered (too large, invalid body). */
  seq: number | null;
  epoch: string | null;
  outcome: ReceiptOutcome;
  /** Why it was dead-lettered (the dead letter's `x-inbox-relay-reason`); only with `dead-lettered`. */
  reason?: string;
  /** When the relay settled it, in milliseconds since the Unix epoch. */
  at: number;
  /** The relay node (NODE_ID) that settled it with RabbitMQ. */
  node: string;
}

/** A receipt before the publishing node stamps its id on it. */
export type ReceiptRequest = Omit<DeliveryReceipt, 'node'>;

/**
 * Where receipts go (the AMQP ReceiptPublisher, a fake in unit tests). `publish` resolves only
 * once RabbitMQ confirmed every receipt of the batch, and rejects if any was not confirmed.
 */
export interface ReceiptSink {
  publish(receipts: readonly ReceiptRequest[]): Promise<void>;
}

/** Whether a message's headers ask for a receipt. */
export function asksForReceipt(headers: Record<string, unknown> | undefined): boolean {
  const value = headers?.[RECEIPT_HEADER];
  return value === true || value === 'true' || value === 1;
}

/** The AMQP body of a receipt (JSON, UTF-8); `reason` only when there is one. */
export function encodeReceipt(receipt: DeliveryReceipt): Buffer {
  const { messageId, user, seq, epoch, outcome, reason, at, node } = receipt;
  return Buffer.from(JSON.stringify({ messageId, user, seq, epoch, outcome, ...(reason === undefined ? {} : { reason }), at, node }));
}

const receiptSchema = z.object({
  messageId: z.string().min(1).max(255),
  user: z.string().min(1).max(128),
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).nullable(),
  epoch: z.string().min(1).max(128).nullable(),
  outcome: z.enum(['acked', 'dead-lettered']),
  reason: z.string().max(1_000).optional(),
  at: z.number().int().min(0),
  node: z.string().min(1).max(64),
});

/** Decodes a receipt body; never throws: the receipt, or why it is not one. */
export function parseReceipt(body: Buffer): { ok: true; receipt: DeliveryReceipt } | { ok: false; reason: string } {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const parsed = receiptSchema.safeParse(value);
  if (!parsed.success)
    return { ok: false, reason: parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ') };
  const { reason, ...rest } = parsed.data;
  return { ok: true, receipt: { ...rest, ...(reason === undefined ? {} : { reason }) } };
}
