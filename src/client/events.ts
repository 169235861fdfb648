/** The events an {@link InboxClient} emits, and their payloads. */
import type { WelcomeFrame } from '../protocol/frame-types.js';
import type { ClientState } from './client-state.js';
import type { InboxClientError } from './errors.js';
import type { InboxMessage } from './message.js';
import type { Position } from './position-store.js';

export interface StateChange {
  readonly from: ClientState;
  readonly to: ClientState;
}

/** A connection got its `welcome`; delivery continues after `lastSeq`. */
export type OpenEvent = Readonly<Omit<WelcomeFrame, 'type'>>;

/** The relay could not honour the client's position (`recovered: false`): messages were lost to this client. */
export interface GapEvent {
  readonly epoch: string;
  /** The first seq the client did not get, when the client held a position in this epoch. */
  readonly lostFromSeq: number | undefined;
  /** Delivery continues after this seq. */
  readonly resumesAfterSeq: number;
}

/** The numbering changed (the relay's state store lost it); the position restarts here. */
export interface ResetEvent {
  readonly epoch: string;
  readonly lastSeq: number;
  readonly reason: string;
  readonly previous: Position | undefined;
}

/** Delivery paused (`degraded`) or resumed (`ok`) on the relay's side. */
export interface StatusEvent {
  readonly state: 'ok' | 'degraded';
  readonly reason: string | undefined;
}

/** A connection ended. */
export interface DisconnectEvent {
  readonly code: number;
  readonly reason: string;
  readonly willReconnect: boolean;
  /** The wait before the next attempt, when reconnecting. */
  readonly delayMs: number | undefined;
}

/**
 * The nack policy gave the message up: the relay dead-lettered it, or (at the relay's nack limit)
 * left it as processed because another connection of the user had acked it; `error` (the relay's
 * RELAY_ERR_NACK_LIMIT) says which.
 */
export interface DeadLetterEvent {
  readonly message: InboxMessage;
  readonly error: unknown;
  readonly attempts: number;
}

/** Event name to payload. `message` is not here: message handlers are consumers, see `InboxClient.on`. */
export interface InboxClientEvents {
  state: StateChange;
  open: OpenEvent;
  gap: GapEvent;
  reset: ResetEvent;
  status: StatusEvent;
  error: InboxClientError;
  disconnect: DisconnectEvent;
  deadLetter: DeadLetterEvent;
}

/** Counters since the client was created. */
export interface ClientStats {
  /** `msg` frames received. */
  readonly received: number;
  /** Messages every consumer processed (position advanced). */
  readonly processed: number;
  /** Frames suppressed because their seq was already processed. */
  readonly duplicates: number;
  /** Frames dropped because their seq was ahead of the position or of an abandoned epoch. */
  readonly outOfSequence: number;
  readonly requeued: number;
  readonly deadLettered: number;
  readonly acksSent: number;
  readonly nacksSent: number;
  /** Connections that got a `welcome`. */
  readonly connections: number;
}
