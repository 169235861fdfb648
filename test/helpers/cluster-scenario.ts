/**
 * One run of the cluster tests, end to end: relay nodes (relay-cluster.ts), users with several
 * logical clients each (cluster-client.ts) on the nodes they pick, a steady publisher that keeps
 * every confirmed messageId, random connection drops, node events (SIGKILL, SIGTERM, rolling
 * restarts, clients moved between nodes) while it publishes; then a settle deadline for clients to
 * process everything, a wait for the inbox queues to empty once everything is acked, and the
 * verdict of cluster-check.ts. It guarantees that:
 * - every client connects (and is welcomed) before the first publish, so each starts from seq 0
 *   and must see every message of its user;
 * - publishing goes on until both `publishMs` passed and every event finished, so every event
 *   happens mid-stream;
 * - whatever happens, the clients, the producer and every node are stopped before it returns or
 *   throws; only a harness failure (a node that does not start, clients never welcomed) throws,
 *   everything the relay does wrong ends up in the counts.
 */
import type { Producer } from '../../src/amqp/producer.js';
import { loadConfig } from '../../src/config.js';
import { inboxQueueName } from '../../src/amqp/topology.js';
import { waitUntil } from '../../src/wait-until.js';
import { ClusterClient } from './cluster-client.js';
import { checkCluster, type ClusterReport } from './cluster-check.js';
import { RelayCluster, type RelayClusterOptions } from './relay-cluster.js';
import { rabbitmqUrl, testProducer, token, uid } from './relay.js';

export type ScenarioEvent =
  /** SIGKILL `node` at `atMs` (from the first publish), start it again `downMs` later. */
  | { atMs: number; kind: 'kill'; node: number; downMs: number }
  /** SIGTERM `node` (it drains), wait for its exit, start it again `downMs` later. */
  | { atMs: number; kind: 'term'; node: number; downMs?: number }
  /** SIGTERM each node in turn, wait for its exit, start it again and wait until it is ready, `pauseMs` later the next. */
  | { atMs: number; kind: 'rolling'; pauseMs?: number }
  /** Every client of replica `replica` now prefers node `toNode`, and its connection is cut so that it goes there. */
  | { atMs: number; kind: 'move'; replica: number; toNode: number };

export interface ClusterScenarioOptions {
  nodes: number;
  users: number;
  /** Logical clients per user (identities `<user>#0`, `<user>#1`, ...); default 2. */
  clientsPerUser?: number;
  /** Messages per second over all users, round robin. */
  ratePerSec: number;
  /** Publishing lasts at least this long (and until every event finished). */
  publishMs: number;
  /** Mean time between two random connection drops over all clients; none when undefined. */
  dropEveryMs?: number;
  /** The node a client of `replica` prefers while it is live; undefined: a random live node at every connect. */
  firstNode?: (replica: number) => number | undefined;
  events?: readonly ScenarioEvent[];
  /** After publishing, how long clients get to process every confirmed message. */
  settleMs: number;
  /** Then how long the inbox queues get to report no messages (at least 6.5 s: the management API samples every 5 s); undefined: not checked. */
  queueSettleMs?: number;
  seed: number;
  env?: RelayClusterOptions['env'];
  nodeArgs?: RelayClusterOptions['nodeArgs'];
  onLine?: RelayClusterOptions['onLine'];
}

export interface ScenarioFigures {
  confirmed: number;
  /** Publishes that failed after the producer's retries (not counted as sent). */
  unconfirmed: number;
  processed: number;
  received: number;
  connections: number;
  drops: number;
  /** Close codes the clients saw, by code. */
  closeCodes: Record<string, number>;
  events: string[];
  publishMs: number;
  /** How long clients took to process everything after publishing; undefined if they did not within settleMs. */
  settledMs: number | undefined;
  /** How long the queues took to report no messages; undefined if they did not within queueSettleMs. */
  queuesEmptyMs: number | undefined;
  wallMs: number;
}

export interface ScenarioResult {
  readonly report: ClusterReport;
  readonly figures: ScenarioFigures;
  /** The relays' last warnings and errors. */
  readonly warnings: readonly string[];
}

/** A small seeded generator (mulberry32): a failing run can be replayed with its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of this run: CLUSTER_SEED when set (to replay a run), else a fresh one. */
export function scenarioSeed(): number {
  const fixed = process.env.CLUSTER_SEED;
  return fixed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(fixed);
}

/**
 * RabbitMQ emits a queue's statistics every `collect_statistics_interval` (5 s by default), so the
 * management API can report a count from before the last messages arrived: a 0 counts only once
 * a full interval (and a margin) passed after clients processed everything.
 */
const QUEUE_STATS_LAG_MS = 6_500;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/**
 * The RabbitMQ management API (RABBITMQ_MANAGEMENT_URL, default port 15672 on the broker's host,
 * with the broker URL's credentials).
 */
function managementBase(): { url: string; authorization: string } {
  const broker = new URL(rabbitmqUrl());
  const base = new URL(process.env.RABBITMQ_MANAGEMENT_URL ?? `http://${broker.hostname}:15672`);
  const user = decodeURIComponent(base.username || broker.username || 'guest');
  const password = decodeURIComponent(base.password || broker.password || 'guest');
  base.username = '';
  base.password = '';
  return { url: base.toString().replace(/\/$/, ''), authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
}

/** A queue's `messages` (ready plus unacked) as the management API reports it; undefined when it cannot tell. */
export async function queueMessages(user: string): Promise<number | undefined> {
  const { url, authorization } = managementBase();
  try {
    const response = await fetch(`${url}/api/queues/%2F/${encodeURIComponent(inboxQueueName(user))}`, {
      headers: { authorization },
      signal: AbortSignal.timeout(5_000),
    });
    if (!response.ok) return undefined;
    const body = (await response.json()) as { messages?: unknown };
    return typeof body.messages === 'number' ? body.messages : undefined;
  } catch {
    return undefined;
  }
}

export async function runClusterScenario(options: ClusterScenarioOptions): Promise<ScenarioResult> {
  const started = Date.now();
  const random = seededRandom(options.seed);
  const cluster = await RelayCluster.start({
    nodes: options.nodes,
    ...(options.env ? { env: options.env } : {}),
    ...(options.nodeArgs ? { nodeArgs: options.nodeArgs } : {}),
    ...(options.onLine ? { onLine: options.onLine } : {}),
  });
  let producer: Producer | undefined;
  const clients: ClusterClient[] = [];
  try {
    producer = testProducer(loadConfig(cluster.env));
    const users = Array.from({ length: options.users }, (_, i) => uid(`cl${i}`));
    const preferred = new Map<string, number | undefined>();
    const perUser = options.clientsPerUser ?? 2;
    for (let replica = 0; replica < perUser; replica += 1) {
      const wave = users.map((user) => {
        const identity = `${user}#${replica}`;
        preferred.set(identity, options.firstNode?.(replica));
        return new ClusterClient({
          identity,
          user,
          token: () => token(user),
          pickUrl: () => cluster.pickUrl(random, preferred.get(identity)),
          random,
        });
      });
      for (const client of wave) client.start();
      clients.push(...wave);
      // One replica after the other: the first client of a user to attach is the one whose
      // node's consumer RabbitMQ makes active (single active consumer), which `firstNode` relies on.
      await waitUntil(() => wave.every((client) => client.welcomes > 0), {
        timeoutMs: 30_000,
        intervalMs: 50,
        what: () => `replica ${replica} welcomed (${wave.filter((client) => client.welcomes === 0).length} not yet)`,
      });
    }

    const confirmed = new Map<string, string[]>(users.map((user) => [user, []]));
    const figures: ScenarioFigures = {
      confirmed: 0,
      unconfirmed: 0,
      processed: 0,
      received: 0,
      connections: 0,
      drops: 0,
      closeCodes: {},
      events: [],
      publishMs: 0,
      settledMs: undefined,
      queuesEmptyMs: undefined,
      wallMs: 0,
    };
    const t0 = Date.now();
    const at = (): string => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
    let eventsDone = false;
    const events = (async () => {
      try {
        for (const event of options.events ?? []) {
          await sleep(t0 + event.atMs - Date.now());
          await runEvent(event, cluster, clients, preferred, (line) => figures.events.push(`${at()} ${line}`));
        }
      } finally {
        eventsDone = true;
      }
    })();
    const publishing = publishSteadily(
      producer,
      users,
      options.ratePerSec,
      () => Date.now() - t0 < options.publishMs || !eventsDone,
      (user, messageId) => confirmed.get(user)!.push(messageId),
      () => (figures.unconfirmed += 1),
    );
    const dropping =
      options.dropEveryMs === undefined
        ? Promise.resolve()
        : dropAtRandom(clients, options.dropEveryMs, random, publishing, () => (figures.drops += 1));
    await Promise.all([events, publishing, dropping]);
    figures.publishMs = Date.now() - t0;
    figures.confirmed = [...confirmed.values()].reduce((sum, ids) => sum + ids.length, 0);

    const settleStart = Date.now();
    const everythingProcessed = (): boolean =>
      clients.every((client) => confirmed.get(client.user)!.every((id) => client.processedIds.has(id)));
    if (await waitUntil(everythingProcessed, { timeoutMs: options.settleMs, intervalMs: 250 }))
      figures.settledMs = Date.now() - settleStart;

    const counts = options.queueSettleMs === undefined ? undefined : await settleQueues(users, options.queueSettleMs, figures);

    for (const client of clients) {
      figures.processed += client.processed.length;
      figures.received += client.received.length;
      figures.connections += client.connections;
      for (const code of client.closeCodes) figures.closeCodes[code] = (figures.closeCodes[code] ?? 0) + 1;
    }
    figures.wallMs = Date.now() - started;
    const report = checkCluster({ confirmed, identities: clients, ...(counts ? { queueMessages: counts } : {}) });
    return { report, figures, warnings: cluster.warnings() };
  } finally {
    for (const client of clients) client.stop();
    await producer?.close();
    await cluster.stop();
  }
}

/**
 * Reads every user's queue `messages` until all are 0 (counted only after QUEUE_STATS_LAG_MS) or
 * `timeoutMs` passed; returns the last counts read.
 */
async function settleQueues(
  users: readonly string[],
  timeoutMs: number,
  figures: ScenarioFigures,
): Promise<Map<string, number | undefined>> {
  const started = Date.now();
  const counts = new Map<string, number | undefined>();
  const readQueues = async (): Promise<boolean> => {
    await Promise.all(users.map(async (user) => counts.set(user, await queueMessages(user))));
    return Date.now() - started >= QUEUE_STATS_LAG_MS && [...counts.values()].every((messages) => messages === 0);
  };
  if (await waitUntil(readQueues, { timeoutMs, intervalMs: 1_000 })) figures.queuesEmptyMs = Date.now() - started;
  return counts;
}

/**
 * Publishes to `users` in turn at `ratePerSec` (on a schedule, so a slow confirm does not slow
 * the rate) while `going()` holds, each message `{ n }` with messageId `<user>-<n>`; resolves once
 * every publish was confirmed or failed.
 */
async function publishSteadily(
  producer: Producer,
  users: readonly string[],
  ratePerSec: number,
  going: () => boolean,
  onConfirmed: (user: string, messageId: string) => void,
  onFailed: () => void,
): Promise<void> {
  const started = Date.now();
  const pending: Promise<void>[] = [];
  const counters = new Map<string, number>();
  for (let k = 0; going(); k += 1) {
    await sleep(started + (k * 1000) / ratePerSec - Date.now());
    const user = users[k % users.length]!;
    const n = (counters.get(user) ?? 0) + 1;
    counters.set(user, n);
    const messageId = `${user}-${n}`;
    pending.push(producer.publish(user, { n }, { messageId }).then(() => onConfirmed(user, messageId), onFailed));
  }
  await Promise.all(pending);
}

/** Cuts a random client's connection every `meanMs` on average (0.5 to 1.5 times it) until `until` settles. */
async function dropAtRandom(
  clients: readonly ClusterClient[],
  meanMs: number,
  random: () => number,
  until: Promise<unknown>,
  onDrop: () => void,
): Promise<void> {
  let done = false;
  const finished = until.finally(() => {
    done = true;
  });
  for (;;) {
    await Promise.race([sleep(meanMs * (0.5 + random())), finished]);
    if (done) return;
    clients[Math.floor(random() * clients.length)]!.drop();
    onDrop();
  }
}

async function runEvent(
  event: ScenarioEvent,
  cluster: RelayCluster,
  clients: readonly ClusterClient[],
  preferred: Map<string, number | undefined>,
  record: (line: string) => void,
): Promise<void> {
  const name = (index: number): string => cluster.nodes[index]?.id ?? `#${index}`;
  switch (event.kind) {
    case 'kill': {
      const exit = await cluster.kill(event.node);
      record(`SIGKILL ${name(event.node)}: ${exit.signal ?? exit.code}`);
      await sleep(event.downMs);
      await cluster.restart(event.node);
      record(`${name(event.node)} ready again`);
      return;
    }
    case 'term': {
      const exit = await cluster.terminate(event.node);
      record(`SIGTERM ${name(event.node)}: exit ${exit.code ?? exit.signal} after ${exit.ms} ms`);
      await sleep(event.downMs ?? 0);
      await cluster.restart(event.node);
      record(`${name(event.node)} ready again`);
      return;
    }
    case 'rolling':
      for (let node = 0; node < cluster.nodes.length; node += 1) {
        const exit = await cluster.terminate(node);
        record(`SIGTERM ${name(node)}: exit ${exit.code ?? exit.signal} after ${exit.ms} ms`);
        await cluster.restart(node);
        record(`${name(node)} ready again`);
        if (node < cluster.nodes.length - 1) await sleep(event.pauseMs ?? 0);
      }
      return;
    case 'move': {
      const moved = clients.filter((client) => client.identity.endsWith(`#${event.replica}`));
      for (const client of moved) {
        preferred.set(client.identity, event.toNode);
        client.drop();
      }
      record(`moved ${moved.length} clients of replica ${event.replica} to ${name(event.toNode)}`);
      return;
    }
  }
}

/** The figures, counts and examples of a run in a few lines, for logs and failure messages. */
export function describeRun(result: ScenarioResult, seed: number): string {
  const { figures, report } = result;
  return [
    `seed ${seed}: counts ${JSON.stringify(report.counts)}`,
    `confirmed ${figures.confirmed} (unconfirmed ${figures.unconfirmed}), processed ${figures.processed}, received ${figures.received}, ` +
      `connections ${figures.connections}, drops ${figures.drops}, close codes ${JSON.stringify(figures.closeCodes)}`,
    `publishing ${figures.publishMs} ms, settled ${figures.settledMs ?? 'no'} ms, queues empty ${figures.queuesEmptyMs ?? 'no'} ms, wall ${figures.wallMs} ms`,
    `events: ${figures.events.join('; ') || 'none'}`,
    ...report.examples.map((example) => `  ${example}`),
    ...(result.warnings.length > 0 ? ['relay warnings:', ...result.warnings.slice(-15).map((line) => `  ${line}`)] : []),
  ].join('\n');
}
