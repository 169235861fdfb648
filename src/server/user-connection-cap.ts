/**
 * The per-user connection cap (MAX_CONNECTIONS_PER_USER), counted on this node. Every connection
 * of a user gets a copy of every message, so without a cap one token could multiply the node's
 * work by the number of sockets it opens. A slot is taken when a hello attaches to the user's
 * stream and given back as soon as the connection closes.
 */
import { CloseCode } from '../protocol/close-codes.js';

/** The close code and reason a connection past its user's cap gets after its hello. */
export const USER_CAP_CLOSE = { code: CloseCode.policyViolation, reason: 'too many connections for this user' } as const;

/** The `refused` reason (admission refusals metric) of a connection past its user's cap. */
export const USER_CAP_REFUSAL = 'user-connections';

/**
 * Slots per user. Guarantees: a user never holds more than `max` slots (0: no limit); taking a
 * slot twice for the same holder takes one; releasing a slot that was not taken does nothing; a
 * user without slots is forgotten (memory is bounded by the users connected).
 */
export class UserConnectionCap<Holder> {
  private readonly slots = new Map<string, Set<Holder>>();

  constructor(private readonly max: number) {}

  /** Takes a slot of `user` for `holder`; false (and nothing taken) when the user is at the cap. */
  acquire(user: string, holder: Holder): boolean {
    let held = this.slots.get(user);
    if (held?.has(holder)) return true;
    if (this.max > 0 && held !== undefined && held.size >= this.max) return false;
    if (held === undefined) {
      held = new Set();
      this.slots.set(user, held);
    }
    held.add(holder);
    return true;
  }

  /** Gives back `holder`'s slot of `user`, if it had one. */
  release(user: string, holder: Holder): void {
    const held = this.slots.get(user);
    if (!held?.delete(holder)) return;
    if (held.size === 0) this.slots.delete(user);
  }

  /** Slots `user` holds now. */
  count(user: string): number {
    return this.slots.get(user)?.size ?? 0;
  }

  /** Users holding at least one slot. */
  get users(): number {
    return this.slots.size;
  }
}
