/**
 * The local 3-node RabbitMQ cluster and Redis Sentinel set of the `cluster` test project, driven
 * through scripts/rabbitmq-cluster.sh and scripts/redis-sentinel.sh (the same commands an operator
 * types; ops/README.md). The project's global setup (cluster-setup.ts) brings both up.
 */
import { execFile } from 'node:child_process';
import { hostname } from 'node:os';
import { promisify } from 'node:util';
import { inject } from 'vitest';

const run = promisify(execFile);

export const RABBITMQ_SCRIPT = 'scripts/rabbitmq-cluster.sh';
export const REDIS_SCRIPT = 'scripts/redis-sentinel.sh';
/** The master name the sentinels watch. */
export const SENTINEL_NAME = 'inbox-relay';

/** Runs one of the two scripts; rejects with its stderr when it exits non-zero. */
export async function script(path: string, args: string[], timeoutMs = 180_000): Promise<string> {
  try {
    const { stdout } = await run('bash', [path, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failed = error as { code?: number | string; stderr?: string; message: string };
    throw new Error(`${path} ${args.join(' ')} failed (${failed.code ?? 'no exit code'}): ${failed.stderr?.trim() || failed.message}`, {
      cause: error,
    });
  }
}

/** Whether `script status` says all is up (exit 0). */
export async function isUp(path: string): Promise<boolean> {
  return script(path, ['status'], 60_000).then(
    () => true,
    () => false,
  );
}

export type NodeNumber = 1 | 2 | 3;
export const NODE_NUMBERS: readonly NodeNumber[] = [1, 2, 3];

/** The Erlang node name of node N, as the script names it (irN@<short host name>). */
export function nodeName(n: NodeNumber): string {
  return `ir${n}@${hostname().split('.')[0]}`;
}

export function nodeNumber(name: string): NodeNumber {
  const found = NODE_NUMBERS.find((n) => nodeName(n) === name);
  if (found === undefined) throw new Error(`${name} is not a node of the local cluster`);
  return found;
}

export function amqpUrl(n: NodeNumber): string {
  return `amqp://guest:guest@127.0.0.1:${5680 + n}`;
}

/** The cluster's AMQP URLs, comma-separated (RABBITMQ_URL's list form), as the global setup found them. */
export function clusterRabbitmqUrls(): string {
  return inject('clusterRabbitmqUrls');
}

/** The sentinels, `host:port` comma-separated (REDIS_SENTINELS' form), as the global setup found them. */
export function clusterRedisSentinels(): string {
  return inject('clusterRedisSentinels');
}

/** A quorum queue as a node's `rabbitmqctl list_queues` reports it. */
export interface QuorumQueueInfo {
  name: string;
  type: string;
  /** The leader's node name; '' (or a stale name) while there is none. */
  leader: string;
  members: string[];
  online: string[];
}

export const rabbitCluster = {
  kill: (n: NodeNumber) => script(RABBITMQ_SCRIPT, ['kill', String(n)]),
  start: (n: NodeNumber) => script(RABBITMQ_SCRIPT, ['start', String(n)]),
  stop: (n: NodeNumber) => script(RABBITMQ_SCRIPT, ['stop', String(n)]),

  /** The nodes node `via` sees running in its cluster. */
  async runningNodes(via: NodeNumber): Promise<string[]> {
    const out = await script(RABBITMQ_SCRIPT, ['ctl', String(via), 'eval', 'rabbit_nodes:all_running().'], 60_000);
    return out
      .replace(/[[\]'\s]/g, '')
      .split(',')
      .filter((name) => name !== '')
      .sort();
  },

  /** Every queue of the default vhost as node `via` reports it (one rabbitmqctl call, about a second). */
  async queues(via: NodeNumber): Promise<QuorumQueueInfo[]> {
    const out = await script(
      RABBITMQ_SCRIPT,
      ['ctl', String(via), 'list_queues', '--quiet', '--formatter', 'json', 'name', 'type', 'leader', 'members', 'online'],
      60_000,
    );
    return JSON.parse(out) as QuorumQueueInfo[];
  },

  /** One queue as node `via` reports it; undefined when that node does not list it. */
  async queue(name: string, via: NodeNumber): Promise<QuorumQueueInfo | undefined> {
    return (await rabbitCluster.queues(via)).find((queue) => queue.name === name);
  },

  /** How many of the quorum queues whose names match `pattern` each node leads (nodes leading none included). */
  async leaderCounts(via: NodeNumber, pattern: RegExp): Promise<Map<NodeNumber, number>> {
    const counts = new Map<NodeNumber, number>(NODE_NUMBERS.map((n) => [n, 0]));
    for (const queue of await rabbitCluster.queues(via)) {
      if (queue.type !== 'quorum' || !pattern.test(queue.name) || queue.leader === '') continue;
      const n = nodeNumber(queue.leader);
      counts.set(n, counts.get(n)! + 1);
    }
    return counts;
  },
};

export const sentinelSet = {
  sentinels: [26391, 26392, 26393].map((port) => ({ host: '127.0.0.1', port })),
  /** The port of Redis server N (1 or 2). */
  serverPort: (n: number) => 6390 + n,
  /** Kills the current primary; resolves to its server number. */
  killPrimary: async (): Promise<number> => Number((await script(REDIS_SCRIPT, ['kill-primary'])).trim()),
  start: (n: number) => script(REDIS_SCRIPT, ['start', String(n)]),
  /** The current primary's server number, as the sentinels say. */
  primary: async (): Promise<number> => Number((await script(REDIS_SCRIPT, ['primary'])).trim()),
};
