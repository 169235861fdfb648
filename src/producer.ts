/**
 * `inbox-relay/producer`: publish to a user's inbox from another Node.js process. Publishing
 * rejects with a RelayError whose `code` says why (ErrorCode: `RELAY_ERR_PUBLISH_NACKED`,
 * `RELAY_ERR_BROKER_BLOCKED`, `RELAY_ERR_PUBLISH_TIMEOUT`, ...), so callers branch on
 * `isRelayError(error, ErrorCode.publishNacked)` instead of comparing strings.
 */
export { Producer } from './amqp/producer.js';
export type { ProducerOptions, PublishOptions, PublishReceipt } from './amqp/producer.js';
export { ReceiptStream } from './amqp/receipt-stream.js';
export type { ReceiptsOptions } from './amqp/receipt-stream.js';
export type { QueueSettings } from './amqp/topology.js';
export { RECEIPTS_EXCHANGE, TOPIC_EXCHANGE } from './amqp/topology.js';
export { RECEIPT_HEADER, parseReceipt } from './delivery/delivery-receipt.js';
export type { DeliveryReceipt, ReceiptOutcome } from './delivery/delivery-receipt.js';
export { isValidTopic, isValidTopicPattern } from './amqp/topics.js';
export type { QueueType } from './config.js';
export type { PresenceEntry, UserPresence } from './presence/presence-store.js';
export type { PresenceEvent } from './presence/presence-tracker.js';
export { PRESENCE_EXCHANGE } from './amqp/topology.js';
export type { RedisTarget, SentinelTarget } from './store/redis-target.js';
export { ErrorCode, RelayError, isRelayError } from './errors.js';
export type { ErrorCodeValue, RelayErrorOptions } from './errors.js';
