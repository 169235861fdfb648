/** How a user stream is set up, and the error an attach meets when its stream closed meanwhile. */
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import type { SeqStore } from '../store/store.js';
import type { Clock } from './background-clock.js';
import type { ReceiptSink } from './delivery-receipt.js';
import type { ReplaySeal } from './replay-seal.js';
import type { ConsumerFactory } from './consumer.js';
import type { NodeBus } from '../cluster/node-bus.js';
import type { DeadLetterHandover } from './dead-letter-handover.js';

export interface UserStreamOptions {
  user: string;
  store: SeqStore;
  consumers: ConsumerFactory;
  /** The consumer's prefetch: the largest window any connection may get. */
  prefetch: number;
  /** A client `nack` with requeue of the same seq past this many times dead-letters it. */
  nackLimit: number;
  maxMessageBytes: number;
  /** Checks the seal of replayed dead letters (REPLAY_KEY); undefined: no replay header is honoured. */
  replaySeal?: ReplaySeal | undefined;
  /** Where delivery receipts go (inbox.receipts); undefined: none is sent. */
  receipts?: ReceiptSink | undefined;
  logger: Logger;
  /** Delay before restarting a lost consumer, by attempt (1, 2, ...). */
  restartDelayMs?: (attempt: number) => number;
  /** Metrics and logs listen here; never in the way of delivery. */
  events?: RelayEvents;
  /**
   * How long the consumer is kept after the last connection left (default 0: released at once).
   * A client that reconnects within it (a network blip, a reconnect storm) joins the same stream:
   * no channel is closed and opened again, and what the consumer holds is sent from memory.
   */
  lingerMs?: number;
  /** How long an acked mark may wait before it is written to the store (see AckedMarkWriter). */
  storeAckIntervalMs?: number;
  clock?: Clock;
  /** How this node tells the user's streams on other nodes what happens here (none: a single node). */
  bus?: NodeBus;
  /** How often a stream that shares its user with other nodes sends them its head (CLUSTER_HEARTBEAT_MS). */
  clusterHeartbeatMs?: number;
  /**
   * Where a closing stream leaves the dead-letter requests the store has not taken, and where the
   * user's next stream on this node finds them (none: they are lost with the stream).
   */
  handover?: DeadLetterHandover;
  /** Called once the stream has no connection left and has released its consumer. */
  onIdle?: () => void;
}

/** The stream closed while a connection was being attached: attach to a new one. */
export class StreamClosedError extends Error {
  /** Set when the stream closed because this attach found the store behind the client (see AttachResult.warning). */
  readonly warning: string | undefined;

  constructor(warning?: string) {
    super('user stream closed');
    this.name = 'StreamClosedError';
    this.warning = warning;
  }
}
