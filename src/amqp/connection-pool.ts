import { EventEmitter } from 'node:events';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { brokerHost, connectAny } from './connect-any.js';
import { coalesceFrameWrites } from './frame-writes.js';
import { ErrorCode, RelayError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { settledWithin } from '../settle.js';

interface Slot {
  index: number;
  model: ChannelModel | undefined;
  /** Which of the broker's URLs the connection went to. */
  node: number;
  connecting: Promise<ChannelModel> | undefined;
  channels: number;
}

export interface ConnectionPoolOptions {
  /** One broker URL, or the URLs of a cluster's nodes (tried in turn; a lost connection moves to the next). */
  url: string | readonly string[];
  /** The AMQP heartbeat asked for, in seconds (RABBITMQ_HEARTBEAT_S); unset: the URL's or the broker's. */
  heartbeatS?: number | undefined;
  /** How long one node may take to open a connection (default 10 s). */
  connectTimeoutMs?: number;
  /** Shown in the RabbitMQ management UI as the connection name. */
  name: string;
  channelsPerConnection: number;
  logger: Logger;
}

export interface ConnectionPoolEvents {
  /** Connection `index` of the pool opened, to the node at `host`. */
  connected: [index: number, host: string];
  disconnected: [index: number, reason: string];
  blocked: [reason: string];
  unblocked: [];
}

/**
 * AMQP connections opened on demand, each carrying up to `channelsPerConnection` channels
 * (RabbitMQ's channel_max is 2047). A lost connection is replaced on the next `openChannel`;
 * the channels it carried emit `close` and their owners reopen them. With several broker URLs
 * (a cluster), a connection goes to the first node that answers, starting after the node whose
 * connection was lost last: a dead node is not the first one tried again. The pool owns its
 * connections; channels belong to whoever opened them.
 */
export class ConnectionPool extends EventEmitter<ConnectionPoolEvents> {
  private readonly slots: Slot[] = [];
  private readonly urls: readonly string[];
  /** The node a new connection tries first. */
  private preferred = 0;
  private closing: Promise<void> | undefined;
  private blockedReason: string | undefined;

  constructor(private readonly options: ConnectionPoolOptions) {
    super();
    this.urls = typeof options.url === 'string' ? [options.url] : options.url;
  }

  /** The broker hosts (host:port) the pool's open connections go to, by connection. */
  get connectedHosts(): string[] {
    return this.slots.filter((slot) => slot.model !== undefined).map((slot) => brokerHost(this.urls[slot.node]!));
  }

  /** Set while RabbitMQ blocks publishing on one of the pool's connections (resource alarm). */
  get blocked(): string | undefined {
    return this.blockedReason;
  }

  get connectionCount(): number {
    return this.slots.filter((slot) => slot.model !== undefined).length;
  }

  async openChannel(): Promise<Channel> {
    return this.open((model) => model.createChannel());
  }

  async openConfirmChannel(): Promise<ConfirmChannel> {
    return this.open((model) => model.createConfirmChannel());
  }

  private async open<C extends Channel>(create: (model: ChannelModel) => Promise<C>): Promise<C> {
    if (this.closing) throw new RelayError(ErrorCode.closed, 'connection pool is closed');
    const slot = this.pickSlot();
    slot.channels += 1;
    try {
      const model = await this.connect(slot);
      const channel = await create(model);
      channel.on('error', (error: Error) => {
        this.options.logger.debug({ err: errorMessage(error), connection: slot.index }, 'amqp channel error');
      });
      channel.once('close', () => {
        slot.channels -= 1;
      });
      return channel;
    } catch (error) {
      slot.channels -= 1;
      throw new RelayError(ErrorCode.brokerUnavailable, `cannot open an AMQP channel: ${errorMessage(error)}`, {
        cause: error,
        retryable: true,
      });
    }
  }

  private pickSlot(): Slot {
    const max = this.options.channelsPerConnection;
    const free = this.slots.find((slot) => slot.channels < max);
    if (free) return free;
    const slot: Slot = { index: this.slots.length, model: undefined, node: 0, connecting: undefined, channels: 0 };
    this.slots.push(slot);
    return slot;
  }

  private connect(slot: Slot): Promise<ChannelModel> {
    if (slot.model) return Promise.resolve(slot.model);
    slot.connecting ??= connectAny(this.urls, {
      start: this.preferred,
      heartbeatS: this.options.heartbeatS,
      timeoutMs: this.options.connectTimeoutMs ?? 10_000,
      clientProperties: { connection_name: `${this.options.name} ${slot.index}` },
    }).then(
      ({ model, index: node }) => {
        slot.model = model;
        slot.node = node;
        slot.connecting = undefined;
        if (!coalesceFrameWrites(model))
          this.options.logger.info({ connection: slot.index }, 'amqplib internals differ: frames are written one by one');
        model.on('error', (error: Error) => {
          this.options.logger.warn({ err: errorMessage(error), connection: slot.index }, 'amqp connection error');
        });
        model.on('blocked', (reason: string) => {
          this.blockedReason = reason || 'blocked';
          this.emit('blocked', this.blockedReason);
        });
        model.on('unblocked', () => {
          this.blockedReason = undefined;
          this.emit('unblocked');
        });
        model.once('close', (error?: Error) => {
          slot.model = undefined;
          // The next connection tries the other nodes first (this one may be down or cut off).
          if (this.urls.length > 1 && error && this.preferred === node) this.preferred = (node + 1) % this.urls.length;
          if (this.blockedReason !== undefined) {
            this.blockedReason = undefined;
            this.emit('unblocked');
          }
          if (!this.closing) this.emit('disconnected', slot.index, error ? errorMessage(error) : 'closed');
        });
        this.emit('connected', slot.index, brokerHost(this.urls[node]!));
        return model;
      },
      (error: unknown) => {
        slot.connecting = undefined;
        throw error;
      },
    );
    return slot.connecting;
  }

  /** Closes every connection of the pool (and so every channel on them). Idempotent. */
  close(): Promise<void> {
    this.closing ??= Promise.all(
      this.slots.map(async (slot) => {
        const model = slot.model ?? (await slot.connecting?.catch(() => undefined));
        if (!model) return;
        // Bounded: a broker that does not answer must not hold a drain past its timeout.
        if (!(await settledWithin(model.close(), 5_000))) {
          this.options.logger.warn({ connection: slot.index }, 'AMQP connection close not confirmed in time; going on');
        }
      }),
    ).then(() => undefined);
    return this.closing;
  }
}
