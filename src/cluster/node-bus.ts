/**
 * The node bus: how relay nodes tell each other what happens to one user (a run of seqs
 * numbered, a connection's cumulative ack, a dead-letter request, the active node's head).
 *
 * Guarantees every implementation gives:
 * - A message published about a user reaches every other node that has a handler subscribed for
 *   that user at the time it arrives, once, validated (see bus-message.ts), with `from` set to
 *   the publisher's node id. A node never receives its own messages.
 * - Messages from one publisher about one user arrive in the order they were published (one
 *   channel per user; Redis keeps a publisher's order on a channel). Nothing is promised about
 *   the order of different publishers, or of different users.
 * - No delivery guarantee: a message published while either side is disconnected, or before the
 *   receiver's subscription is in place, is lost, silently. Receivers must be able to tell
 *   they missed something (seqs are gap-free; `head` heartbeats show the active node's head)
 *   and read what they missed from the store's history. `publish` rejecting means the message
 *   was certainly not sent; resolving does not mean anyone received it.
 * - A malformed incoming message (not JSON, wrong shape) is counted and dropped, never handed to
 *   a handler, and never throws into the transport. A handler that throws is counted and logged;
 *   the other handlers still get the message.
 * - Several handlers may subscribe to one user; the transport subscribes to the user's channel
 *   once, when the first arrives, and releases it when the last leaves.
 * - `close()` is idempotent, releases what the bus created (connections, subscriptions) and
 *   nothing it was handed.
 */
import type { BusMessage, OutgoingBusMessage } from './bus-message.js';

export type BusHandler = (message: BusMessage) => void;

/** `connected`: messages flow both ways. `disconnected`: messages in either direction are being lost. */
export type BusState = 'connected' | 'disconnected';

export interface Subscription {
  /** Stops this handler (others for the same user keep theirs). Idempotent; resolves once the channel is released if it was the last. */
  close(): Promise<void>;
}

/** What a bus received and dropped (for metrics and tests). */
export interface NodeBusStats {
  /** Valid messages from other nodes handed to handlers (one per message, whatever the handler count). */
  received: number;
  /** Incoming messages dropped because they were not valid bus messages. */
  malformed: number;
  /** Handler calls that threw. */
  handlerErrors: number;
}

export interface NodeBus {
  /** This node's id: the `from` of every message it publishes. */
  readonly nodeId: string;
  /** The current connection state; `onState` reports every change. */
  readonly state: BusState;
  /** Calls `listener` on every change of `state`; returns a function that stops it. */
  onState(listener: (state: BusState) => void): () => void;
  /**
   * Hands `handler` the messages other nodes publish about `user` from now on. Resolves once the
   * subscription is in place; while the bus is disconnected (or if it goes down before the
   * transport confirms) it resolves without it, and the subscription is made when the bus
   * reconnects (state turns `connected` only after that). Rejects (and registers nothing) if the
   * transport refused the subscription or did not answer in time while up, or after `close()`.
   */
  subscribe(user: string, handler: BusHandler): Promise<Subscription>;
  /** Sends `message` about `user` to the other nodes, best effort (see the guarantees above). */
  publish(user: string, message: OutgoingBusMessage): Promise<void>;
  readonly stats: NodeBusStats;
  close(): Promise<void>;
}

/** The pub/sub channel of a user's messages: `<prefix>bus:{<user>}` (the braces keep it in the user's hash slot, as the store's keys). */
export function busChannel(keyPrefix: string, user: string): string {
  return `${keyPrefix}bus:{${user}}`;
}

/** The user a channel named by `busChannel` is about, or undefined for any other channel. */
export function busChannelUser(keyPrefix: string, channel: string): string | undefined {
  const head = `${keyPrefix}bus:{`;
  if (!channel.startsWith(head) || !channel.endsWith('}')) return undefined;
  const user = channel.slice(head.length, -1);
  return user.length > 0 ? user : undefined;
}
