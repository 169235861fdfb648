/**
 * What happens in the relay, as events. Metrics and logs listen here; nothing in the delivery
 * path waits for a listener. Every refusal and breaker transition carries a reason.
 */
import { EventEmitter } from 'node:events';
import type { ReplayRefusal } from './delivery/replay-seal.js';

export type HandshakeOutcome =
  'new' | 'resumed' | 'not-recovered' | 'reset' | 'unauthenticated' | 'expired' | 'forbidden' | 'unavailable' | 'refused';

export type BreakerState = 'open' | 'half-open' | 'closed';

export interface RelayEventMap {
  handshake: [outcome: HandshakeOutcome];
  'connection-closed': [code: number];
  delivered: [count: number, redelivered: number];
  acked: [count: number];
  /** Publish timestamp to client ack, per message acked to RabbitMQ. */
  'delivery-latency': [ms: number];
  nacked: [requeue: boolean];
  /** A message was dead-lettered for `reason` (a client's request when the relay rejects it; an invalid message; the unrouted path). */
  'dead-lettered': [reason: string];
  /**
   * The copy of a dead letter with its reason could not be published: the message was rejected
   * plainly instead, and reached inbox.dead with `x-death` reason `rejected` and no relay reason.
   */
  'dead-letter-fallback': [reason: string];
  /** Delivery receipts RabbitMQ confirmed (published to inbox.receipts), per batch. */
  'receipts-published': [count: number];
  /** Delivery receipts of a batch that was not confirmed (kept, published again after a backoff). */
  'receipts-failed': [count: number];
  'consumer-lost': [reason: string];
  'epoch-lost': [];
  'unrouted-moved': [];
  /** A message carried the replay header without a valid seal (REPLAY_KEY): it was deduplicated as usual. */
  'replay-refused': [reason: ReplayRefusal];
  /** The unrouted mover declared a user's inbox. */
  'unrouted-provisioned': [];
  /** The unrouted mover waits this long for UNROUTED_PROVISION_RATE_PER_SEC before declaring an inbox. */
  'unrouted-provision-wait': [ms: number];
  breaker: [name: string, state: BreakerState];
  refused: [reason: string];
  'amqp-connection': [state: 'connected' | 'disconnected'];
  'redis-connection': [state: 'connected' | 'disconnected'];
  /** The store's connection came back on a different Redis server than before (a Sentinel failover). */
  'store-failover': [];
  'broker-blocked': [blocked: boolean];
  /** Messages sent to connections here that another node numbered (kept from the node bus). */
  'cluster-delivered': [count: number];
  /** A cumulative ack forwarded to the user's other nodes, or received from one. */
  'cluster-ack-forwarded': [direction: 'sent' | 'received'];
  /** A consumer of this node became the active one for a user (it received a delivery first). */
  'ownership-gained': [];
  /** This node found itself behind another node's head (a lost notification) and reads history. */
  'cluster-healed': [];
  'node-bus': [state: 'connected' | 'disconnected'];
  /** The HTTP publish API answered a request with this status, after this many seconds. */
  'publish-api-request': [status: number, seconds: number];
  /** Messages of HTTP publish requests, by outcome: accepted, inbox-full, broker-blocked, timeout, unavailable. */
  'publish-api-messages': [outcome: string, count: number];
  /** A presence script call (a batch of puts and removes, or a sweep) succeeded or failed. */
  'presence-write': [request: 'apply' | 'sweep', outcome: 'ok' | 'failed'];
  /** A user went online or offline (this node's call made the move) and its event was published to inbox.presence, or not. */
  'presence-transition': [state: 'online' | 'offline', outcome: 'published' | 'failed'];
}

export class RelayEvents extends EventEmitter<RelayEventMap> {}
