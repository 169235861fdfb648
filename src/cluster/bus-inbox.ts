/**
 * The receiving side every node bus shares: the handlers of each user, and the path from a raw
 * payload to them (decode, drop malformed and own messages, call each handler). Nothing here
 * throws to its caller, which is a transport's event handler.
 */
import type { Logger } from '../log.js';
import { decodeBusMessage } from './bus-message.js';
import type { BusHandler, NodeBusStats } from './node-bus.js';

export class BusInbox {
  private readonly handlers = new Map<string, Set<BusHandler>>();
  private readonly counts: NodeBusStats = { received: 0, malformed: 0, handlerErrors: 0 };

  constructor(
    private readonly nodeId: string,
    private readonly logger: Logger,
  ) {}

  get stats(): NodeBusStats {
    return { ...this.counts };
  }

  /** Adds a handler; true when it is the user's first (the transport must subscribe). */
  add(user: string, handler: BusHandler): boolean {
    const set = this.handlers.get(user);
    if (set) {
      set.add(handler);
      return false;
    }
    this.handlers.set(user, new Set([handler]));
    return true;
  }

  /** Removes a handler; true when it was the user's last (the transport may unsubscribe). */
  remove(user: string, handler: BusHandler): boolean {
    const set = this.handlers.get(user);
    if (!set?.delete(handler)) return false;
    if (set.size > 0) return false;
    this.handlers.delete(user);
    return true;
  }

  has(user: string): boolean {
    return this.handlers.has(user);
  }

  /** The users with at least one handler. */
  users(): string[] {
    return [...this.handlers.keys()];
  }

  clear(): void {
    this.handlers.clear();
  }

  /** Hands a payload received for `user` to its handlers, unless it is malformed or this node's own. */
  deliver(user: string, payload: string): void {
    const set = this.handlers.get(user);
    if (!set) return;
    const decoded = decodeBusMessage(payload);
    if (!decoded.ok) {
      this.counts.malformed += 1;
      // The payload may carry message bodies (fragments): only its size and the reason are logged.
      this.logger.warn({ user, bytes: payload.length, reason: decoded.reason }, 'node bus: malformed message dropped');
      return;
    }
    if (decoded.message.from === this.nodeId) return;
    this.counts.received += 1;
    // A copy, so that a handler that unsubscribes (or subscribes) meanwhile does not change this delivery.
    for (const handler of [...set]) {
      try {
        handler(decoded.message);
      } catch (error) {
        this.counts.handlerErrors += 1;
        this.logger.error(
          { user, kind: decoded.message.kind, err: error instanceof Error ? error.message : String(error) },
          'node bus: handler threw',
        );
      }
    }
  }
}
