/**
 * A steady stream through real relay processes on the local cluster (local-cluster.ts), for the
 * failover tests: relay nodes given the cluster's three AMQP URLs and its sentinels, one logical
 * client per user (cluster-client.ts) on a random live relay, and a publisher that is the
 * producer library itself (a Producer with the URL list): a publish it finally rejects counts as
 * failed and is not tried again here, so `failed` and `retried` are the library's own figures.
 * It guarantees that:
 * - every client is welcomed before the first publish, so each must see every message of its user;
 * - `flowingAgain(at)` times, per user, the first processed message that was published at or after
 *   `at` (a message in flight at a kill does not count as flowing again);
 * - `finish()` stops publishing, waits for every confirmed message, checks the run
 *   (cluster-check.ts), and stops clients, producer and relays whatever happens (`stop()` too).
 */
import amqp from 'amqplib';
import { Producer } from '../../src/amqp/producer.js';
import { inboxQueueName, queueSettingsOf } from '../../src/amqp/topology.js';
import { loadConfig } from '../../src/config.js';
import { waitUntil } from '../../src/wait-until.js';
import { ClusterClient } from './cluster-client.js';
import { checkCluster, type ClusterReport } from './cluster-check.js';
import { seededRandom } from './cluster-scenario.js';
import { clusterRabbitmqUrls, clusterRedisSentinels, SENTINEL_NAME } from './local-cluster.js';
import { RelayCluster } from './relay-cluster.js';
import { token, uid } from './relay.js';

export interface FailoverStreamOptions {
  relays: number;
  users: number;
  /** Messages per second over all users, round robin. */
  ratePerSec: number;
  seed: number;
}

export interface FailoverResult {
  readonly report: ClusterReport;
  confirmed: number;
  failed: number;
  /** Failed publishes by error code and message (digits masked), for the log. */
  failures: Record<string, number>;
  retried: number;
  /** How long clients took to process every confirmed message once publishing stopped; undefined: not within the deadline. */
  settledMs: number | undefined;
  readonly warnings: readonly string[];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** p50, p99 and max of a list of milliseconds, in seconds, for the log. */
export function percentiles(values: readonly number[]): string {
  if (values.length === 0) return 'none';
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  const s = (ms: number): string => (ms / 1000).toFixed(2);
  return `p50 ${s(at(0.5))} s, p99 ${s(at(0.99))} s, max ${s(sorted.at(-1)!)} s (${values.length} users)`;
}

export class FailoverStream {
  readonly users: string[];
  readonly clients: ClusterClient[] = [];
  private readonly confirmed = new Map<string, string[]>();
  /** When each message's publish began (ms, Date.now). */
  private readonly sentAt = new Map<string, number>();
  /** Per user, the processing time of each message, by message id (the first time only). */
  private readonly processedAt = new Map<string, Map<string, number>>();
  private failed = 0;
  private readonly failures: Record<string, number> = {};
  /** When each user's last publish failed (ms, Date.now). */
  readonly lastFailure = new Map<string, number>();
  private publishing = true;
  private publisher: Promise<void> = Promise.resolve();
  private stopped = false;

  private constructor(
    readonly relays: RelayCluster,
    readonly producer: Producer,
    private readonly options: FailoverStreamOptions,
  ) {
    this.users = Array.from({ length: options.users }, (_, i) => uid(`fo${i}`));
    for (const user of this.users) {
      this.confirmed.set(user, []);
      this.processedAt.set(user, new Map());
    }
  }

  /** The relays' environment: the cluster's node list and sentinels, no REDIS_URL. */
  static relayEnv(): Record<string, string | undefined> {
    return {
      RABBITMQ_URL: clusterRabbitmqUrls(),
      REDIS_URL: undefined,
      REDIS_SENTINELS: clusterRedisSentinels(),
      REDIS_SENTINEL_NAME: SENTINEL_NAME,
    };
  }

  /** Starts the relays and the clients (all welcomed), then the publisher. */
  static async start(options: FailoverStreamOptions): Promise<FailoverStream> {
    const relays = await RelayCluster.start({ nodes: options.relays, env: FailoverStream.relayEnv() });
    const config = loadConfig(relays.env);
    const producer = new Producer({
      url: config.rabbitmqUrls,
      connectionName: 'failover-test producer',
      provision: queueSettingsOf(config),
    });
    const stream = new FailoverStream(relays, producer, options);
    try {
      await stream.startClients();
    } catch (error) {
      await stream.stop();
      throw error;
    }
    stream.publisher = stream.publishSteadily();
    return stream;
  }

  /** The regex of this run's inbox queue names (for leader counts). */
  get queuePattern(): RegExp {
    return new RegExp(`^inbox\\.fo\\d+-`);
  }

  /**
   * Waits until every user processed a message published at or after `at` (or `timeoutMs`
   * passed); resolves to each such user's delay from `at`, and the users that had none.
   */
  async flowingAgain(at: number, timeoutMs: number): Promise<{ delays: number[]; missing: string[] }> {
    const firstAfter = (user: string): number | undefined => {
      let first: number | undefined;
      for (const [id, time] of this.processedAt.get(user)!) {
        if ((this.sentAt.get(id) ?? 0) >= at && (first === undefined || time < first)) first = time;
      }
      return first;
    };
    await waitUntil(() => this.users.every((user) => firstAfter(user) !== undefined), { timeoutMs, intervalMs: 100 });
    const delays: number[] = [];
    const missing: string[] = [];
    for (const user of this.users) {
      const first = firstAfter(user);
      if (first === undefined) missing.push(user);
      else delays.push(first - at);
    }
    return { delays, missing };
  }

  /** Stops publishing, waits up to `settleMs` for every confirmed message, checks, and stops everything. */
  async finish(settleMs: number): Promise<FailoverResult> {
    try {
      this.publishing = false;
      await this.publisher;
      const settleStart = Date.now();
      const everything = (): boolean =>
        this.clients.every((client) => this.confirmed.get(client.user)!.every((id) => client.processedIds.has(id)));
      const settled = await waitUntil(everything, { timeoutMs: settleMs, intervalMs: 250 });
      const report = checkCluster({ confirmed: this.confirmed, identities: this.clients });
      return {
        report,
        confirmed: [...this.confirmed.values()].reduce((sum, ids) => sum + ids.length, 0),
        failed: this.failed,
        failures: this.failures,
        retried: this.producer.retried,
        settledMs: settled ? Date.now() - settleStart : undefined,
        warnings: this.relays.warnings(),
      };
    } finally {
      await this.stop();
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.publishing = false;
    for (const client of this.clients) client.stop();
    await this.publisher.catch(() => undefined);
    await this.producer.close().catch(() => undefined);
    await this.relays.stop();
    await this.deleteQueues();
  }

  private async startClients(): Promise<void> {
    const random = seededRandom(this.options.seed);
    for (const user of this.users) {
      const times = this.processedAt.get(user)!;
      this.clients.push(
        new ClusterClient({
          identity: `${user}#0`,
          user,
          token: () => token(user),
          pickUrl: () => this.relays.pickUrl(random),
          random,
          onProcessed: (msg) => {
            if (!times.has(msg.id)) times.set(msg.id, Date.now());
          },
        }),
      );
    }
    for (const client of this.clients) client.start();
    await waitUntil(() => this.clients.every((client) => client.welcomes > 0), {
      timeoutMs: 30_000,
      intervalMs: 50,
      what: () => `every client welcomed (${this.clients.filter((client) => client.welcomes === 0).length} not yet)`,
    });
  }

  /** One message per tick, users in turn, on a schedule (a slow confirm does not slow the rate). */
  private async publishSteadily(): Promise<void> {
    const started = Date.now();
    const pending: Promise<void>[] = [];
    const counters = new Map<string, number>();
    for (let k = 0; this.publishing; k += 1) {
      await sleep(started + (k * 1000) / this.options.ratePerSec - Date.now());
      if (!this.publishing) break;
      const user = this.users[k % this.users.length]!;
      const n = (counters.get(user) ?? 0) + 1;
      counters.set(user, n);
      const messageId = `${user}-${n}`;
      this.sentAt.set(messageId, Date.now());
      pending.push(
        this.producer.publish(user, { n }, { messageId }).then(
          () => void this.confirmed.get(user)!.push(messageId),
          (error: unknown) => this.onFailed(user, error),
        ),
      );
    }
    await Promise.all(pending);
  }

  private onFailed(user: string, error: unknown): void {
    this.failed += 1;
    this.lastFailure.set(user, Date.now());
    const code = (error as { code?: unknown }).code;
    const key = `${String(code)}: ${(error instanceof Error ? error.message : String(error)).replace(/ for \S+/, ' for <user>').replace(/\d+/g, 'N')}`;
    this.failures[key] = (this.failures[key] ?? 0) + 1;
  }

  /** Removes this run's inbox queues through the first node that answers. */
  private async deleteQueues(): Promise<void> {
    for (const url of clusterRabbitmqUrls().split(',')) {
      try {
        const connection = await amqp.connect(url);
        connection.on('error', () => undefined);
        const channel = await connection.createChannel();
        channel.on('error', () => undefined);
        for (const user of this.users) await channel.deleteQueue(inboxQueueName(user));
        await connection.close();
        return;
      } catch {
        // That node is down: the next one.
      }
    }
  }
}
