/**
 * N relay processes that form one cluster for the tests: the same RabbitMQ, Redis and
 * REDIS_KEY_PREFIX (so they share the numbering and the node bus), one NODE_ID each (n1, n2, ...).
 * It guarantees that:
 * - `start()` resolves once every node answers /readyz with 200;
 * - a node is out of `liveUrls()` from the moment it is told to stop (before the signal, so no
 *   client picks a node that is going away) until it is ready again after `restart()`;
 * - a restarted node keeps its ports when they are still free (clients holding its URL reach it
 *   again), and takes new ones otherwise; `liveUrls()` always names the ports in use;
 * - every child still running is killed when `stop()` is called or this process exits.
 *
 * Set CHILD_RELAY_LOG_DIR to keep each node's whole output in `<dir>/<prefix><node>.log`, and
 * DEBUG_RELAY_LOG to a log level to see more than warnings.
 */
import { appendFileSync } from 'node:fs';
import { freePort } from '../../src/process/free-port.js';
import { RelayProcess, type RelayExit } from '../../src/process/relay-process.js';
import { testEnv } from './relay.js';

const KEPT_LINES = 200;
const LOG_DIR = process.env.CHILD_RELAY_LOG_DIR;

export interface RelayClusterOptions {
  nodes: number;
  /** Added to every node's environment (after testEnv's defaults). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Node options for every child, e.g. `['--import', preload]`. */
  nodeArgs?: readonly string[];
  /** Called with every line any node writes (stdout and stderr). */
  onLine?: (nodeId: string, line: string) => void;
  /** SIGTERM escalates to SIGKILL after this long; default 20 s, well past DRAIN_TIMEOUT_MS. */
  killAfterMs?: number;
}

/** One node of the cluster: its id, where it listens, and its process while it runs. */
export interface ClusterNode {
  readonly id: string;
  port: number;
  adminPort: number;
  process: RelayProcess | undefined;
  /** Ready and not told to stop: clients may connect. */
  live: boolean;
  /** How many times it was started. */
  starts: number;
  /** The node's last lines of output, across restarts. */
  readonly lines: string[];
}

export function streamUrl(port: number): string {
  return `ws://127.0.0.1:${port}/v1/stream`;
}

export class RelayCluster {
  readonly nodes: ClusterNode[];

  private constructor(
    /** The environment every node shares (without NODE_ID, PORT, ADMIN_PORT). */
    readonly env: Readonly<Record<string, string | undefined>>,
    private readonly options: RelayClusterOptions,
    nodes: ClusterNode[],
  ) {
    this.nodes = nodes;
  }

  /** Starts every node at once; resolves once all are ready. If one cannot start, the others are killed first. */
  static async start(options: RelayClusterOptions): Promise<RelayCluster> {
    const env = testEnv({ LOG_LEVEL: process.env.DEBUG_RELAY_LOG ?? 'warn', ...options.env });
    const nodes: ClusterNode[] = [];
    for (let i = 0; i < options.nodes; i += 1) {
      nodes.push({
        id: `n${i + 1}`,
        port: await freePort(),
        adminPort: await freePort(),
        process: undefined,
        live: false,
        starts: 0,
        lines: [],
      });
    }
    const cluster = new RelayCluster(env, options, nodes);
    const started = await Promise.allSettled(nodes.map((_, i) => cluster.restart(i)));
    const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) {
      await cluster.stop();
      throw failed.reason;
    }
    return cluster;
  }

  url(index: number): string {
    return streamUrl(this.node(index).port);
  }

  /** The stream URLs of the nodes clients may connect to now. */
  liveUrls(): string[] {
    return this.nodes.filter((node) => node.live).map((node) => streamUrl(node.port));
  }

  isLive(index: number): boolean {
    return this.node(index).live;
  }

  /**
   * A live node's URL: `preferred` when it is live, else one picked with `random` among the live
   * ones; undefined while none is live.
   */
  pickUrl(random: () => number, preferred?: number): string | undefined {
    if (preferred !== undefined && this.nodes[preferred]?.live) return this.url(preferred);
    const live = this.liveUrls();
    return live.length === 0 ? undefined : live[Math.floor(random() * live.length)];
  }

  /** SIGKILL (a crash): resolves once the process is gone. */
  kill(index: number): Promise<RelayExit> {
    return this.stopNode(index, 'SIGKILL');
  }

  /** SIGTERM (the relay drains, then exits): resolves once the process is gone. */
  terminate(index: number): Promise<RelayExit> {
    return this.stopNode(index, 'SIGTERM');
  }

  /**
   * Starts node `index` (again), on its ports if they are free, else on new ones; resolves once it
   * is ready and live. Rejects if it is still running.
   */
  async restart(index: number): Promise<void> {
    const node = this.node(index);
    if (node.process?.running) throw new Error(`RelayCluster: ${node.id} is still running`);
    try {
      node.process = await this.spawn(node);
    } catch (error) {
      // Another process may have taken a port while the node was down (free-port.ts says so).
      if (!/EADDRINUSE/.test(String(error))) throw error;
      node.port = await freePort();
      node.adminPort = await freePort();
      node.process = await this.spawn(node);
    }
    node.live = true;
  }

  /** The warnings and errors every node logged (the last ones kept), for failure messages. */
  warnings(limit = 40): string[] {
    return this.nodes
      .flatMap((node) => node.lines.filter((line) => /"level":(40|50|60)|Error|error:/.test(line)).map((line) => `${node.id}: ${line}`))
      .slice(-limit);
  }

  /** Kills every node still running (SIGKILL: tests end fast; teardown removes their queues). */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((_, i) => this.kill(i)));
  }

  private node(index: number): ClusterNode {
    const node = this.nodes[index];
    if (!node) throw new Error(`RelayCluster: no node ${index}`);
    return node;
  }

  private async stopNode(index: number, signal: 'SIGKILL' | 'SIGTERM'): Promise<RelayExit> {
    const node = this.node(index);
    node.live = false;
    if (!node.process) return { code: null, signal: null, ms: 0 };
    return node.process.stop(signal, this.options.killAfterMs ?? 20_000);
  }

  private spawn(node: ClusterNode): Promise<RelayProcess> {
    node.starts += 1;
    const logFile = LOG_DIR === undefined ? undefined : `${LOG_DIR}/${String(this.env.REDIS_KEY_PREFIX).replace(/:$/, '')}-${node.id}.log`;
    return RelayProcess.start({
      env: { ...this.env, NODE_ID: node.id, PORT: String(node.port), ADMIN_PORT: String(node.adminPort) },
      adminPort: node.adminPort,
      ...(this.options.nodeArgs ? { nodeArgs: this.options.nodeArgs } : {}),
      onLine: (line) => {
        node.lines.push(line);
        if (node.lines.length > KEPT_LINES) node.lines.shift();
        if (logFile !== undefined) appendFileSync(logFile, `${line}\n`);
        this.options.onLine?.(node.id, line);
      },
    });
  }
}
