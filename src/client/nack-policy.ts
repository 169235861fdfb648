/**
 * What happens to a message whose consumer threw: `requeue` (the relay rewinds and sends it
 * again) or `dead-letter` (the relay moves it to the dead-letter queue and delivery continues
 * with the next seq). Nothing is dropped silently either way.
 */
import type { InboxMessage } from './message.js';

export type NackDecision = 'requeue' | 'dead-letter';

export interface HandlerFailure {
  readonly message: InboxMessage;
  readonly error: unknown;
  /** How many times this seq has failed in this epoch, this failure included (1-based). */
  readonly attempt: number;
}

/** Decides the fate of a failed message. Must not throw. */
export type NackPolicy = (failure: HandlerFailure) => NackDecision;

export const DEFAULT_MAX_REQUEUES = 3;

/** Requeues a message up to `maxRequeues` times, then dead-letters it (so it is handled at most `maxRequeues + 1` times). */
export function requeueUpTo(maxRequeues: number): NackPolicy {
  return ({ attempt }) => (attempt <= maxRequeues ? 'requeue' : 'dead-letter');
}
