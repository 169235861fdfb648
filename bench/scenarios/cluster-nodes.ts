/**
 * The relay nodes of the cluster scenario: relay children sharing RabbitMQ, Redis and one
 * REDIS_KEY_PREFIX, each with its own NODE_ID and ports, and one bench client per user on each.
 * Guarantees:
 * - every start of a node gets a NODE_ID of its own (`bench-<run>-<name><n>`), so a consumer tag
 *   tells which process, not only which slot, owns a queue;
 * - clients of a node that was killed and started again reconnect with the position their
 *   predecessors reached (resume), as a real client would;
 * - each node's clients report to their own receiver slot, so one message received on both
 *   nodes counts once per node.
 */
import { RelayClient, newClientStats, type ClientStats } from '../clients/relay-client.js';
import { BenchRelay } from '../env/bench-relay.js';
import { forEachLimit } from '../lib/time.js';
import { mintToken } from '../systems/relay-system.js';
import { ReceiverSlot } from '../systems/system.js';
import type { QueueType } from '../../src/config.js';
import type { BenchContext } from './context.js';
import { connectWithRetry, type ConnectCounters } from './connect-retry.js';

const CLUSTER_COUNTERS = 'inbox_relay_cluster_';
/** Handshakes in flight while a node's clients connect. */
const CONNECT_CONCURRENCY = 50;
const CONNECT_BOUND_MS = 120_000;

export class ClusterNode {
  relay: BenchRelay | undefined;
  nodeId = '';
  /** One client per user, by user index (the current connection; replaced on reconnect after a restart). */
  clients: RelayClient[] = [];
  readonly slot = new ReceiverSlot();
  readonly stats: ClientStats = newClientStats();
  readonly connects: ConnectCounters = { attempts: 0, refusals: 0, failures: {} };
  private starts = 0;

  constructor(
    private readonly ctx: BenchContext,
    readonly name: string,
    private readonly settings: { keyPrefix: string; queueType: QueueType; tag: string },
  ) {}

  get pid(): number | undefined {
    return this.relay?.pid;
  }

  /** Starts a new incarnation of the node (the previous one must be gone). */
  async start(): Promise<void> {
    this.starts += 1;
    this.nodeId = `bench-${this.ctx.runId}-${this.name}${this.starts}`;
    this.relay = await BenchRelay.start({
      rabbitmqUrl: this.ctx.rabbitmqUrl,
      redisUrl: this.ctx.redisUrl,
      redisKeyPrefix: this.settings.keyPrefix,
      jwtSecret: this.ctx.jwtSecret,
      queueType: this.settings.queueType,
      window: this.ctx.window,
      logFile: `${this.ctx.resultsDir}/relay-${this.ctx.runId}-${this.settings.tag}-${this.name}${this.starts}.log.tmp`,
      env: { NODE_ID: this.nodeId },
      onSpawn: (pid) => this.ctx.priorities.apply(pid),
    });
    // Threads started since the spawn inherit from the thread that started them; set them all.
    this.ctx.priorities.apply(this.relay.pid);
  }

  /**
   * Connects a client for every user (index = user number) to the current incarnation, resuming
   * from the position of the user's previous client on this node if it had one. Rejects if any
   * did not connect within the bound.
   */
  async connect(users: readonly string[]): Promise<void> {
    const relay = this.relay;
    if (!relay) throw new Error(`node ${this.name} is not running`);
    const previous = this.clients;
    const get = this.slot.get;
    const clients = users.map((user, u) => {
      const client = new RelayClient(relay.url, user, mintToken(user, this.ctx.jwtSecret), this.ctx.window, get, this.stats);
      const before = previous[u];
      if (before?.epoch !== undefined) {
        client.epoch = before.epoch;
        client.lastSeq = before.lastSeq;
      }
      return client;
    });
    this.clients = clients;
    const deadline = Date.now() + CONNECT_BOUND_MS;
    const outcome = await forEachLimit(
      clients,
      CONNECT_CONCURRENCY,
      (client) => connectWithRetry(client, deadline, this.connects),
      deadline,
    );
    if (outcome.done !== clients.length)
      throw new Error(`node ${this.nodeId}: ${outcome.failed} clients did not connect (${outcome.errors.join('; ')})\n${relay.logTail()}`);
  }

  /** The node's counters `inbox_relay_cluster_*` (name without that prefix); {} when it does not answer. */
  async clusterCounters(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [series, value] of Object.entries((await this.relay?.counters(CLUSTER_COUNTERS)) ?? {}))
      out[series.slice(CLUSTER_COUNTERS.length)] = value;
    return out;
  }

  /** SIGKILL; the node's clients see their connections drop. */
  async kill(): Promise<void> {
    await this.relay?.kill();
  }

  /** Closes the clients and stops the node (SIGTERM: it drains). */
  async stop(): Promise<void> {
    for (const client of this.clients) client.close();
    if (this.relay?.running) await this.relay.stop();
  }
}

/** How much each counter grew from `before` to `after`. */
export function counterDelta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [series, value] of Object.entries(after)) out[series] = value - (before[series] ?? 0);
  return out;
}
