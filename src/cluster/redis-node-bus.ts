/**
 * The node bus over the deployment's Redis pub/sub (guarantees in node-bus.ts): one channel per
 * user (`busChannel`), one connection in subscriber mode and one to publish on, both made by the
 * `createRedisClient` (fail fast, reconnect forever with capped backoff).
 *
 * Reconnects. ioredis can re-send the SUBSCRIBEs of a lost connection itself (`autoResubscribe`,
 * on by default), but it emits `ready` before it sends them (ioredis 6, readyHandler in
 * built/redis/event_handler.js), so nothing tells when they are back in place; and it would
 * restore a channel released while disconnected. This bus turns that off and, on every `ready`,
 * subscribes to the channels of the users that have handlers now; its state turns `connected`
 * only once Redis confirmed them (and the publishing connection is up).
 * Redis pub/sub keeps nothing: what other nodes published while this node's subscriber was
 * disconnected, or before its SUBSCRIBE was confirmed, is lost. The later steps heal that from
 * the store's history (seqs are gap-free; the active node's `head` heartbeats show the gap).
 */
import type { Redis } from 'ioredis';
import { background } from '../background.js';
import { ErrorCode, RelayError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { createRedisClient, type RedisTarget } from '../store/redis-target.js';
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

export interface RedisNodeBusOptions {
  /** A `redis://` URL, or the Sentinel set that names the primary (pub/sub follows a failover too). */
  url: RedisTarget;
  /** The store's key prefix (REDIS_KEY_PREFIX): nodes talk only to nodes with the same one. */
  keyPrefix: string;
  nodeId: string;
  commandTimeoutMs?: number;
  logger?: Logger;
}

const errorMessage = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * QUIT, and wait for the connection to end: Redis drops a client's subscriptions when it closes
 * the connection, which it does after answering QUIT; once `end` is seen, they are gone. A
 * connection that is not up has nothing on the server: it is only stopped (no `end` to wait for
 * when it was between reconnect attempts).
 */
async function closeClient(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
  try {
    await client.quit();
  } catch {
    client.disconnect();
    return;
  }
  await ended;
}

export class RedisNodeBus implements NodeBus {
  readonly nodeId: string;
  /** The connection in subscriber mode (exposed for tests and diagnostics; owned by the bus). */
  readonly subscriber: Redis;
  /** The connection messages are published on (exposed for tests and diagnostics; owned by the bus). */
  readonly publisher: Redis;
  private readonly keyPrefix: string;
  private readonly logger: Logger;
  private readonly inbox: BusInbox;
  private readonly watch = new BusStateWatch('disconnected');
  /** Each user's SUBSCRIBE, pending or confirmed, while the user has handlers. */
  private readonly subscribing = new Map<string, Promise<void>>();
  /** Whether Redis confirmed, on the current subscriber connection, every channel wanted when it became ready. */
  private resubscribed = false;
  /** Counts subscriber `ready`s, so that a resubscribe answered after a later reconnect does not count for it. */
  private generation = 0;
  private closing: Promise<void> | undefined;

  constructor(options: RedisNodeBusOptions) {
    this.nodeId = options.nodeId;
    this.keyPrefix = options.keyPrefix;
    this.logger = options.logger ?? silentLogger();
    this.inbox = new BusInbox(this.nodeId, this.logger);
    this.subscriber = createRedisClient(options.url, options.commandTimeoutMs);
    this.publisher = createRedisClient(options.url, options.commandTimeoutMs);
    // Read by ioredis on each reconnect; the bus resubscribes itself (see the module comment).
    this.subscriber.options.autoResubscribe = false;

    this.subscriber.on('message', (channel: string, payload: string) => {
      const user = busChannelUser(this.keyPrefix, channel);
      if (user !== undefined) this.inbox.deliver(user, payload);
    });
    this.subscriber.on('ready', () => this.resubscribe());
    this.subscriber.on('close', () => {
      this.resubscribed = false;
      this.updateState();
    });
    this.publisher.on('ready', () => this.updateState());
    this.publisher.on('close', () => this.updateState());
    for (const [name, client] of [
      ['subscriber', this.subscriber],
      ['publisher', this.publisher],
    ] as const) {
      client.on('error', (error: Error) => this.logger.debug({ connection: name, err: error.message }, 'node bus: redis error'));
    }
  }

  get state(): BusState {
    return this.watch.state;
  }

  get stats(): NodeBusStats {
    return this.inbox.stats;
  }

  onState(listener: (state: BusState) => void): () => void {
    return this.watch.on(listener);
  }

  /** Connects both connections; rejects if Redis cannot be reached (ioredis keeps retrying in the background). */
  async connect(): Promise<void> {
    if (this.closing) throw new RelayError(ErrorCode.closed, 'node bus is closed');
    for (const client of [this.subscriber, this.publisher]) if (client.status === 'wait') await client.connect();
  }

  async subscribe(user: string, handler: BusHandler): Promise<Subscription> {
    if (this.closing) throw new RelayError(ErrorCode.closed, 'node bus is closed');
    let pending = this.subscribing.get(user);
    if (this.inbox.add(user, handler) || !pending) {
      pending = this.sendSubscribe(user);
      this.subscribing.set(user, pending);
    }
    try {
      await pending;
    } catch (error) {
      if (this.inbox.remove(user, handler) && this.subscribing.get(user) === pending) this.subscribing.delete(user);
      throw new RelayError(ErrorCode.storeUnavailable, `node bus: cannot subscribe: ${errorMessage(error)}`, { cause: error });
    }
    let closed: Promise<void> | undefined;
    return { close: () => (closed ??= this.leave(user, handler)) };
  }

  async publish(user: string, message: OutgoingBusMessage): Promise<void> {
    if (this.closing) throw new RelayError(ErrorCode.closed, 'node bus is closed');
    // Not queued while disconnected: a message sent late is worth less than one known lost.
    if (this.publisher.status !== 'ready') throw new RelayError(ErrorCode.storeUnavailable, 'node bus: Redis is not connected');
    await this.publisher.publish(busChannel(this.keyPrefix, user), encodeBusMessage(this.nodeId, message));
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.inbox.clear();
    this.subscribing.clear();
    await Promise.all([this.subscriber, this.publisher].map((client) => closeClient(client)));
    this.updateState();
  }

  /**
   * Sends the user's SUBSCRIBE now if the connection is up; otherwise, or if the connection is lost
   * before Redis answers, the next `ready` includes the user. Rejects only if Redis refused it or
   * did not answer in time on a connection still up.
   */
  private async sendSubscribe(user: string): Promise<void> {
    if (this.subscriber.status !== 'ready') return;
    const generation = this.generation;
    try {
      await this.subscriber.subscribe(busChannel(this.keyPrefix, user));
    } catch (error) {
      // Lost with the connection (it was going down as this was sent): the user keeps its handler, and the next `ready` subscribes it.
      if (generation !== this.generation || this.subscriber.status !== 'ready') return;
      throw error;
    }
  }

  private async leave(user: string, handler: BusHandler): Promise<void> {
    if (!this.inbox.remove(user, handler)) return;
    this.subscribing.delete(user);
    // While disconnected there is nothing to release: the next `ready` subscribes only to users with handlers.
    if (this.closing || this.subscriber.status !== 'ready') return;
    try {
      await this.subscriber.unsubscribe(busChannel(this.keyPrefix, user));
    } catch (error) {
      // The channel may stay subscribed until the next reconnect; its messages find no handler and are ignored.
      this.logger.warn({ user, err: errorMessage(error) }, 'node bus: unsubscribe failed');
    }
  }

  private resubscribe(): void {
    this.resubscribed = false;
    const generation = ++this.generation;
    const channels = this.inbox.users().map((user) => busChannel(this.keyPrefix, user));
    if (channels.length === 0) {
      this.resubscribed = true;
      this.updateState();
      return;
    }
    background(
      this.subscriber.subscribe(...channels).then(() => {
        if (generation !== this.generation || this.subscriber.status !== 'ready') return;
        this.resubscribed = true;
        this.updateState();
      }),
      (error) => {
        if (this.closing || generation !== this.generation) return;
        // A ready connection that cannot subscribe is of no use: reconnect, and try again on `ready`.
        this.logger.warn({ channels: channels.length, err: errorMessage(error) }, 'node bus: resubscribe failed; reconnecting');
        this.subscriber.disconnect(true);
      },
    );
  }

  private updateState(): void {
    const up = !this.closing && this.resubscribed && this.subscriber.status === 'ready' && this.publisher.status === 'ready';
    this.watch.set(up ? 'connected' : 'disconnected', (error) =>
      this.logger.error({ err: errorMessage(error) }, 'node bus: state listener threw'),
    );
  }
}
