/**
 * Presence: which connections of a user are open now, on which node, since when, with the
 * client's `device` label, and when the user was last seen once offline.
 *
 * The contract every presence store keeps:
 * - An entry lives until its expiry (the put that wrote it, plus the TTL asked for); a node
 *   keeps its connections' entries alive by putting them again, and the entries of a node that
 *   stops doing so (it died) count for nothing once they expire.
 * - A user is online while it has at least one live entry. Each move between online and offline
 *   is reported exactly once, to the caller whose `apply` or `sweep` made it (the one that put
 *   the first entry, removed the last one, or found the last one expired), with the store's time.
 * - Operations of one `apply` take effect in order, as one step.
 * - `read` answers the live entries only, and `lastSeen` of a user once it went offline.
 */

/** One connection's presence entry as stored. */
export interface PresenceEntry {
  /** The relay node the connection is open on (NODE_ID). */
  node: string;
  /** When the connection was welcomed (ms since the epoch, the node's clock). */
  since: number;
  /** The label the client chose in `hello`, if it sent one. */
  device?: string;
}

/** A change to the store: put (add, or refresh the expiry of) or remove one connection's entry. */
export type PresenceOperation =
  { kind: 'put'; user: string; connection: string; entry: PresenceEntry } | { kind: 'remove'; user: string; connection: string };

/** A user went online or offline; `connections` is how many entries the user has after it. */
export interface PresenceTransition {
  user: string;
  online: boolean;
  connections: number;
  /** The store's time of the change (ms since the epoch). */
  at: number;
}

/** A user's presence as `read` answers it. */
export interface UserPresence {
  user: string;
  online: boolean;
  /** The user's live connections, oldest first. */
  connections: PresenceEntry[];
  /** When the user went offline (ms since the epoch), if it did and that is still kept. */
  lastSeen?: number;
}

export interface PresenceStore {
  /** Applies `operations` in order; entries put live for `ttlMs`. Resolves with the moves they made. */
  apply(operations: readonly PresenceOperation[], ttlMs: number): Promise<PresenceTransition[]>;
  /** Drops expired entries of at most `limit` users; resolves with the users this took offline. */
  sweep(limit: number): Promise<PresenceTransition[]>;
  /** The presence of each user, in the order asked. */
  read(users: readonly string[]): Promise<UserPresence[]>;
  /** Closes what the store opened. Idempotent. */
  close(): Promise<void>;
}

/** How long a user's lastSeen is kept after it went offline: 30 days. */
export const LAST_SEEN_TTL_MS = 30 * 24 * 60 * 60 * 1000;

/** One user's presence. */
export async function readPresence(store: PresenceStore, user: string): Promise<UserPresence> {
  const [presence] = await store.read([user]);
  if (!presence) throw new Error(`no presence answered for ${user}`);
  return presence;
}
