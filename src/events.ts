/**
 * What happens in the relay, as events. Metrics and logs listen here; nothing in the delivery
 * path waits for a listener. Every refusal and breaker transition carries a reason.
 */
import { EventEmitter } from 'node:events';

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
  'dead-lettered': [reason: string];
  'consumer-lost': [reason: string];
  'epoch-lost': [];
  'unrouted-moved': [];
  breaker: [name: string, state: BreakerState];
  refused: [reason: string];
  'amqp-connection': [state: 'connected' | 'disconnected'];
  'redis-connection': [state: 'connected' | 'disconnected'];
  'broker-blocked': [blocked: boolean];
}

export class RelayEvents extends EventEmitter<RelayEventMap> {}
