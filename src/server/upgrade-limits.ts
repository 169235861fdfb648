/**
 * Bounds on the sockets a node holds before they are WebSocket connections, so that sockets that
 * never complete an upgrade (idle, one byte at a time) cannot pile up:
 * - how many may be pending at once (MAX_PENDING_UPGRADES): past it a new socket is closed at once;
 * - how long one may take to send a complete request (UPGRADE_TIMEOUT_MS), enforced by Node's HTTP
 *   server (`headersTimeout`/`requestTimeout`, which cover upgrade requests and idle sockets too),
 *   checked every `checkIntervalMs`;
 * - how many sockets of any kind the listener holds (`server.maxConnections`): connections,
 *   pending upgrades, and refused ones still being closed.
 * Pure: counts and sockets are inputs; the gateway wires them to its listener.
 */

/** The `refused` reasons (admission refusals metric) of these bounds; fixed. */
export const PENDING_UPGRADES_REFUSAL = 'pending-upgrades';
export const UPGRADE_TIMEOUT_REFUSAL = 'upgrade-timeout';
export const MAX_SOCKETS_REFUSAL = 'max-sockets';

/**
 * How often the HTTP server looks for requests past the deadline: a tenth of it, at most a second,
 * so a socket is closed between the deadline and 1.1 times it (1 s late at most).
 */
export function checkIntervalMs(upgradeTimeoutMs: number): number {
  return Math.max(10, Math.min(1_000, Math.ceil(upgradeTimeoutMs / 10)));
}

/**
 * The listener's socket limit: every connection, every pending upgrade, and as many again for
 * sockets a refusal is closing (1013 after the upgrade, cut within 5 s; HTTP refusals, closed once
 * written). Only a flood past all of these meets it; Node then closes the new socket at once.
 */
export function maxSockets(limits: { maxConnections: number; maxPendingUpgrades: number }): number {
  return limits.maxConnections + 2 * limits.maxPendingUpgrades;
}

/**
 * Sockets accepted that have not completed their upgrade request. Guarantees: never more than
 * `max` at once; a socket is counted once however often it is settled (upgrade, then close);
 * settling a socket that was not counted does nothing.
 */
export class PendingUpgrades<Socket> {
  private readonly pending = new Set<Socket>();

  constructor(private readonly max: number) {}

  /** Counts `socket` as pending; false (and nothing counted) when `max` are pending already. */
  admit(socket: Socket): boolean {
    if (this.pending.size >= this.max) return false;
    this.pending.add(socket);
    return true;
  }

  /** `socket` completed its upgrade request or closed: it is no longer pending. */
  settle(socket: Socket): void {
    this.pending.delete(socket);
  }

  get size(): number {
    return this.pending.size;
  }
}
