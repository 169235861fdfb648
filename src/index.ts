/**
 * The relay as a library (`import { startRelay, loadConfig } from 'inbox-relay'`): run a relay
 * node inside another Node.js process. `npm start` (src/main.ts) does the same from the
 * environment. The client SDK is `inbox-relay/client`, the wire protocol `inbox-relay/protocol`,
 * the producer `inbox-relay/producer`.
 */
export { startRelay } from './server/relay.js';
export type { Relay, RelayDependencies } from './server/relay.js';
export { DEFAULTS, loadConfig } from './config.js';
export type { Env, JwtConfig, QueueType, RelayConfig } from './config.js';
export { ErrorCode, RelayError, errorMessage, isRelayError } from './errors.js';
export type { ErrorCodeValue, RelayErrorOptions } from './errors.js';
export { RelayEvents } from './events.js';
export type { BreakerState, HandshakeOutcome, RelayEventMap } from './events.js';
export { createLogger, silentLogger } from './log.js';
export type { Logger } from './log.js';
export { MemoryStore } from './store/memory-store.js';
export type { AssignInput, HistoryEntry, HistoryLimits, SeqStore, StreamMeta } from './store/store.js';
