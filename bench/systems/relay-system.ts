/** inbox-relay end to end: the relay as a child process, one bench WebSocket client per user. */
import jwt from 'jsonwebtoken';
import { RelayClient, newClientStats, type AckPolicy, type ClientStats } from '../clients/relay-client.js';
import { BenchRelay, type BenchRelayOptions } from '../env/bench-relay.js';
import { deleteRedisPrefix } from '../lib/redis-cleanup.js';
import { forEachLimit, withTimeout } from '../lib/time.js';
import type { ReceiverSlot, SystemUnderTest } from './system.js';

/** What the relay child is started with (its own options), plus how the bench drives it. */
export interface RelaySystemOptions extends Pick<
  BenchRelayOptions,
  'rabbitmqUrl' | 'redisUrl' | 'redisKeyPrefix' | 'jwtSecret' | 'queueType' | 'window' | 'logFile' | 'nodeArgs'
> {
  connectConcurrency?: number;
  /** Default: an ack per message. */
  ackPolicy?: AckPolicy;
  /** Default 'relay'. */
  name?: 'relay' | 'relay-coalesced';
  /** Called with the relay child's pid once it runs (the bench raises its priority). */
  onStarted?: (pid: number) => void;
}

export function mintToken(user: string, secret: string): string {
  return jwt.sign({ sub: user }, secret, { algorithm: 'HS256', expiresIn: 6 * 3600 });
}

export class RelaySystem implements SystemUnderTest {
  readonly name: 'relay' | 'relay-coalesced';
  relay: BenchRelay | undefined;
  clients: RelayClient[] = [];
  readonly stats: ClientStats = newClientStats();

  constructor(
    private readonly options: RelaySystemOptions,
    private readonly slot: ReceiverSlot,
  ) {
    this.name = options.name ?? 'relay';
  }

  pids(): Record<string, number | undefined> {
    return { relay: this.relay?.pid };
  }

  health(): string | undefined {
    const lost = this.clients.filter((c) => !c.open).length;
    return lost === 0 ? undefined : `${lost} of ${this.clients.length} relay connections are closed`;
  }

  /** Starts the relay child only (the connections scenario connects clients itself). */
  async startRelay(): Promise<BenchRelay> {
    this.relay ??= await BenchRelay.start({
      rabbitmqUrl: this.options.rabbitmqUrl,
      redisUrl: this.options.redisUrl,
      redisKeyPrefix: this.options.redisKeyPrefix,
      jwtSecret: this.options.jwtSecret,
      queueType: this.options.queueType,
      window: this.options.window,
      logFile: this.options.logFile,
      ...(this.options.nodeArgs ? { nodeArgs: this.options.nodeArgs } : {}),
      ...(this.options.onStarted ? { onSpawn: this.options.onStarted } : {}),
    });
    // Threads started since the spawn inherit from the thread that started them; set them all.
    this.options.onStarted?.(this.relay.pid);
    return this.relay;
  }

  makeClients(users: readonly string[]): RelayClient[] {
    const relay = this.relay;
    if (!relay) throw new Error('relay not started');
    return users.map(
      (user) =>
        new RelayClient(
          relay.url,
          user,
          mintToken(user, this.options.jwtSecret),
          this.options.window,
          this.slot.get,
          this.stats,
          this.options.ackPolicy ?? { kind: 'each' },
        ),
    );
  }

  async start(users: readonly string[]): Promise<void> {
    await this.startRelay();
    const clients = this.makeClients(users);
    const result = await forEachLimit(
      clients,
      this.options.connectConcurrency ?? 100,
      async (client) => {
        await client.connect();
      },
      Date.now() + 300_000,
    );
    this.clients.push(...clients);
    if (result.done !== users.length)
      throw new Error(`relay clients: ${result.failed} failed (${result.errors.join('; ')})\n${this.relay?.logTail() ?? ''}`);
  }

  async stop(): Promise<void> {
    for (const client of this.clients) client.close();
    this.clients = [];
    await this.relay?.stop();
    this.relay = undefined;
    await withTimeout(deleteRedisPrefix(this.options.redisUrl, this.options.redisKeyPrefix), 60_000, 'Redis cleanup').catch(() => 0);
  }
}
