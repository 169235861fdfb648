/**
 * A node bus in process memory, for unit tests and single-node runs: MemoryNodeBus instances that
 * share one MemoryBusHub behave like nodes sharing one Redis. Same guarantees as the Redis bus
 * (node-bus.ts): payloads go through the same JSON encoding and validation, and are delivered
 * asynchronously (one microtask per publish, so in publish order and never inside `publish`).
 * `setConnected(false)` simulates an outage of one node's link: what it publishes fails and what
 * others publish to it is lost, as with Redis.
 */
import { ErrorCode, RelayError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { BusInbox } from './bus-inbox.js';
import { encodeBusMessage, type OutgoingBusMessage } from './bus-message.js';
import { BusStateWatch } from './bus-state.js';
import {
  busChannel,
  busChannelUser,
  type BusHandler,
  type BusState,
  type NodeBus,
  type NodeBusStats,
  type Subscription,
} from './node-bus.js';

type Receiver = (channel: string, payload: string) => void;

/** The shared medium: channels and their subscribed nodes, like Redis pub/sub. */
export class MemoryBusHub {
  private readonly channels = new Map<string, Set<Receiver>>();

  join(channel: string, receiver: Receiver): void {
    const set = this.channels.get(channel);
    if (set) set.add(receiver);
    else this.channels.set(channel, new Set([receiver]));
  }

  leave(channel: string, receiver: Receiver): void {
    const set = this.channels.get(channel);
    if (!set?.delete(receiver)) return;
    if (set.size === 0) this.channels.delete(channel);
  }

  /** Sends a raw payload to the channel's subscribers at this moment (tests use it to inject malformed ones). */
  publish(channel: string, payload: string): void {
    const set = this.channels.get(channel);
    if (!set) return;
    const targets = [...set];
    queueMicrotask(() => {
      for (const receiver of targets) receiver(channel, payload);
    });
  }

  /** How many nodes are subscribed to `channel` (as Redis' PUBSUB NUMSUB). */
  subscribers(channel: string): number {
    return this.channels.get(channel)?.size ?? 0;
  }
}

export interface MemoryNodeBusOptions {
  hub: MemoryBusHub;
  nodeId: string;
  /** Channel names as the Redis bus makes them (default ''). */
  keyPrefix?: string;
  logger?: Logger;
}

export class MemoryNodeBus implements NodeBus {
  readonly nodeId: string;
  private readonly hub: MemoryBusHub;
  private readonly keyPrefix: string;
  private readonly logger: Logger;
  private readonly inbox: BusInbox;
  private readonly watch = new BusStateWatch('connected');
  private readonly receiver: Receiver = (channel, payload) => {
    if (this.watch.state !== 'connected') return;
    const user = busChannelUser(this.keyPrefix, channel);
    if (user !== undefined) this.inbox.deliver(user, payload);
  };
  private closed = false;

  constructor(options: MemoryNodeBusOptions) {
    this.nodeId = options.nodeId;
    this.hub = options.hub;
    this.keyPrefix = options.keyPrefix ?? '';
    this.logger = options.logger ?? silentLogger();
    this.inbox = new BusInbox(this.nodeId, this.logger);
  }

  get state(): BusState {
    return this.closed ? 'disconnected' : this.watch.state;
  }

  get stats(): NodeBusStats {
    return this.inbox.stats;
  }

  onState(listener: (state: BusState) => void): () => void {
    return this.watch.on(listener);
  }

  /** Simulates the loss (false) and return (true) of this node's link to the hub. */
  setConnected(connected: boolean): void {
    if (this.closed) return;
    this.watch.set(connected ? 'connected' : 'disconnected', (error) =>
      this.logger.error({ err: String(error) }, 'node bus: state listener threw'),
    );
  }

  async subscribe(user: string, handler: BusHandler): Promise<Subscription> {
    if (this.closed) throw new RelayError(ErrorCode.closed, 'node bus is closed');
    if (this.inbox.add(user, handler)) this.hub.join(busChannel(this.keyPrefix, user), this.receiver);
    let done = false;
    return {
      close: async () => {
        if (done) return;
        done = true;
        if (this.inbox.remove(user, handler)) this.hub.leave(busChannel(this.keyPrefix, user), this.receiver);
      },
    };
  }

  async publish(user: string, message: OutgoingBusMessage): Promise<void> {
    if (this.closed) throw new RelayError(ErrorCode.closed, 'node bus is closed');
    if (this.watch.state !== 'connected') throw new RelayError(ErrorCode.storeUnavailable, 'node bus is disconnected');
    this.hub.publish(busChannel(this.keyPrefix, user), encodeBusMessage(this.nodeId, message));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const user of this.inbox.users()) this.hub.leave(busChannel(this.keyPrefix, user), this.receiver);
    this.inbox.clear();
  }
}
