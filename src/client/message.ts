/** A message as the client hands it to consumers. */
import type { MsgFrame } from '../protocol/frame-types.js';

/**
 * One delivered message. Within an epoch, consumers see seqs in increasing order, each at most
 * once, unless a consumer failed it and the nack policy asked for it again.
 */
export interface InboxMessage {
  /** The numbering `seq` belongs to. */
  readonly epoch: string;
  /** Per-user sequence number: starts at 1 in each epoch, increases by exactly 1. */
  readonly seq: number;
  /** The producer's `messageId` (idempotency key). */
  readonly id: string;
  /** Producer timestamp, ms since the epoch. */
  readonly ts: number;
  /** True when the message may have been seen before (by this client or another connection). */
  readonly redelivered: boolean;
  readonly contentType: string;
  /** The topic the producer published to, when the message came through one (`producer.publishTopic`); absent otherwise. */
  readonly topic?: string;
  /** The JSON body, or a base64 string for non-JSON content types. */
  readonly data: unknown;
}

export function toInboxMessage(frame: MsgFrame, epoch: string, seenBefore: boolean): InboxMessage {
  return {
    epoch,
    seq: frame.seq,
    id: frame.id,
    ts: frame.ts,
    redelivered: frame.redelivered || seenBefore,
    contentType: frame.contentType,
    ...(frame.topic === undefined ? {} : { topic: frame.topic }),
    data: frame.data,
  };
}
