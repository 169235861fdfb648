/**
 * Real relay processes (dist/) on the local 3-node RabbitMQ cluster and Redis Sentinel set, with
 * users streaming at a steady rate through the producer library:
 * - the RabbitMQ node leading most inbox queues is SIGKILLed, deliveries flow again, it is started
 *   again and rejoins; then the same with the node leading most queues after that. Every
 *   confirmed message is delivered, in order, gap-free, nothing twice without the redelivered flag;
 * - the Redis primary is SIGKILLed and Sentinel promotes the replica: the relays go on with the
 *   new primary; a client may get a `reset` (numbering the replica had not received is lost with
 *   the primary) but every confirmed message still reaches its user;
 * - a relay started with a bad broker or Redis setting exits non-zero naming the variable.
 * Timings (kill to flowing again, per user) are printed, not asserted.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { RELAY_MAIN } from '../../src/process/relay-process.js';
import { waitUntil } from '../../src/wait-until.js';
import { ZERO_COUNTS } from '../helpers/cluster-check.js';
import { scenarioSeed } from '../helpers/cluster-scenario.js';
import { FailoverStream, percentiles, type FailoverResult } from '../helpers/failover-stream.js';
import {
  clusterRabbitmqUrls,
  isUp,
  REDIS_SCRIPT,
  clusterRedisSentinels,
  NODE_NUMBERS,
  nodeName,
  rabbitCluster,
  sentinelSet,
  type NodeNumber,
} from '../helpers/local-cluster.js';
import { testEnv } from '../helpers/relay.js';

/** Two relays, 50 users, two messages per user per second. */
const RELAYS = 2;
const USERS = 50;
const RATE = 100;
const allNodes = NODE_NUMBERS.map(nodeName).sort();

function summary(result: FailoverResult): string {
  return [
    `counts ${JSON.stringify(result.report.counts)}`,
    `confirmed ${result.confirmed}, failed publishes ${result.failed}, retried publishes ${result.retried}, settled ${result.settledMs ?? 'no'} ms`,
    `failures: ${JSON.stringify(result.failures)}`,
    ...result.report.examples.map((example) => `  ${example}`),
    ...(result.warnings.length > 0 ? ['relay warnings:', ...result.warnings.slice(-20).map((line) => `  ${line}`)] : []),
  ].join('\n');
}

/** The node leading most of this run's inbox queues, as node `via` reports it. */
async function busiestLeader(stream: FailoverStream, via: NodeNumber): Promise<{ node: NodeNumber; counts: string }> {
  const counts = await rabbitCluster.leaderCounts(via, stream.queuePattern);
  const node = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];
  return { node, counts: [...counts.entries()].map(([n, count]) => `${n}:${count}`).join(' ') };
}

describe('relays through a RabbitMQ node failure', () => {
  it('delivers every confirmed message in order across the SIGKILL of two leading nodes in turn', { timeout: 360_000 }, async () => {
    const seed = scenarioSeed();
    const stream = await FailoverStream.start({ relays: RELAYS, users: USERS, ratePerSec: RATE, seed });
    const lines: string[] = [];
    try {
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      let via: NodeNumber = 1;
      for (let round = 1; round <= 2; round += 1) {
        const { node, counts } = await busiestLeader(stream, via);
        const killedAt = Date.now();
        await rabbitCluster.kill(node);
        via = NODE_NUMBERS.find((n) => n !== node)!;
        const { delays, missing } = await stream.flowingAgain(killedAt, 30_000);
        lines.push(
          `kill ${round}: ${nodeName(node)} (leaders ${counts}) SIGKILLed; deliveries flowing again per user: ${percentiles(delays)}` +
            (missing.length > 0 ? `; ${missing.length} users not within 30 s` : ''),
        );
        const failing = stream.users.filter((user) => (stream.lastFailure.get(user) ?? 0) > killedAt);
        lines.push(
          `  ${failing.length} users had failed publishes since the kill; last failure ${failing.length === 0 ? '-' : ((Math.max(...failing.map((u) => stream.lastFailure.get(u)!)) - killedAt) / 1000).toFixed(1)} s after it`,
        );
        if (failing.length > 0) {
          const failingQueues = new Set(failing.map((user) => `inbox.${user}`));
          const queues = (await rabbitCluster.queues(via)).filter((queue) => failingQueues.has(queue.name));
          const shapes = new Map<string, number>();
          for (const queue of queues) {
            const shape = `leader ${queue.leader || '-'} members ${queue.members.length} online ${queue.online.length}`;
            shapes.set(shape, (shapes.get(shape) ?? 0) + 1);
          }
          lines.push(`  their queues now, as ${nodeName(via)} reports: ${JSON.stringify(Object.fromEntries(shapes))}`);
        }
        const restartedAt = Date.now();
        await rabbitCluster.start(node);
        await waitUntil(async () => JSON.stringify(await rabbitCluster.runningNodes(via)) === JSON.stringify(allNodes), {
          timeoutMs: 60_000,
          intervalMs: 500,
          what: `${nodeName(node)} back in the cluster`,
        });
        lines.push(`${nodeName(node)} restarted and running in the cluster after ${((Date.now() - restartedAt) / 1000).toFixed(1)} s`);
      }
    } catch (error) {
      await stream.stop();
      throw error;
    }
    const result = await stream.finish(60_000);
    const text = `seed ${seed}, ${RELAYS} relays, ${USERS} users at ${RATE} msg/s\n${lines.join('\n')}\n${summary(result)}`;
    console.info(`[relay-failover] ${text}`);
    expect(result.confirmed).toBeGreaterThan(0);
    expect(result.report.counts, text).toEqual(ZERO_COUNTS);
  });
});

describe('relays through a Redis failover', () => {
  it(
    'keeps delivering on the promoted replica: every confirmed message reaches its user, resets allowed',
    { timeout: 180_000 },
    async () => {
      const seed = scenarioSeed();
      const stream = await FailoverStream.start({ relays: RELAYS, users: USERS, ratePerSec: RATE, seed });
      let killed: number | undefined;
      const lines: string[] = [];
      try {
        await new Promise((resolve) => setTimeout(resolve, 5_000));
        const killedAt = Date.now();
        killed = await sentinelSet.killPrimary();
        const { delays, missing } = await stream.flowingAgain(killedAt, 60_000);
        lines.push(
          `Redis primary ${killed} SIGKILLed, primary now ${await sentinelSet.primary()}; deliveries paused per user: ${percentiles(delays)}` +
            (missing.length > 0 ? `; ${missing.length} users not within 60 s` : ''),
        );
        await new Promise((resolve) => setTimeout(resolve, 3_000));
      } catch (error) {
        await stream.stop();
        throw error;
      } finally {
        // The set whole again for the next test: the old primary comes back as a replica.
        if (killed !== undefined) {
          await sentinelSet.start(killed);
          // Started again it is an empty primary until the sentinels make it a replica of the new one.
          await waitUntil(() => isUp(REDIS_SCRIPT), {
            timeoutMs: 60_000,
            intervalMs: 1_000,
            what: `Redis server ${killed} back as a replica`,
          });
        }
      }
      const result = await stream.finish(60_000);
      const text = `seed ${seed}, ${RELAYS} relays, ${USERS} users at ${RATE} msg/s\n${lines.join('\n')}\n${summary(result)}`;
      console.info(`[relay-failover] ${text}`);
      expect(result.confirmed).toBeGreaterThan(0);
      // A reset starts a new epoch in which messages may come again (not flagged): only loss and
      // stalls count here.
      expect({ lost: result.report.counts.lost, stalled: result.report.counts.stalled }, text).toEqual({ lost: 0, stalled: 0 });
    },
  );
});

/** Runs the relay with `env`; resolves to its exit code and output, or `code: 'running'` after `timeoutMs`. */
function runRelay(env: Record<string, string | undefined>, timeoutMs: number): Promise<{ code: number | 'running'; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [RELAY_MAIN], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ code: 'running', output });
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, output });
    });
  });
}

describe('relay configuration for a cluster', () => {
  const base = (): Record<string, string | undefined> => ({ ...testEnv({ LOG_LEVEL: 'warn' }), REDIS_URL: undefined });

  it('exits non-zero naming RABBITMQ_URL when one entry of the list is malformed', async () => {
    const urls = clusterRabbitmqUrls().split(',');
    const { code, output } = await runRelay({ ...base(), RABBITMQ_URL: `${urls[0]},http://127.0.0.1:5682,${urls[2]}` }, 20_000);
    expect(code).not.toBe(0);
    expect(code).not.toBe('running');
    expect(output).toMatch(/RABBITMQ_URL: entry 2 of 3/);
  });

  it('exits non-zero naming REDIS_SENTINELS when it is set together with REDIS_URL', async () => {
    const { code, output } = await runRelay(
      {
        ...base(),
        RABBITMQ_URL: clusterRabbitmqUrls(),
        REDIS_URL: `redis://127.0.0.1:${sentinelSet.serverPort(1)}`,
        REDIS_SENTINELS: clusterRedisSentinels(),
        REDIS_SENTINEL_NAME: 'inbox-relay',
      },
      20_000,
    );
    expect(code).not.toBe(0);
    expect(code).not.toBe('running');
    expect(output).toMatch(/REDIS_SENTINELS: cannot be used together with REDIS_URL/);
  });

  // ioredis would ask the sentinels again forever; the relay asks them for the name at start.
  it('exits non-zero naming REDIS_SENTINEL_NAME when the sentinels do not monitor that master name', async () => {
    const { code, output } = await runRelay(
      { ...base(), RABBITMQ_URL: clusterRabbitmqUrls(), REDIS_SENTINELS: clusterRedisSentinels(), REDIS_SENTINEL_NAME: 'nope' },
      20_000,
    );
    expect(code).not.toBe(0);
    expect(code).not.toBe('running');
    expect(output).toMatch(/REDIS_SENTINEL_NAME: no sentinel monitors a master named \\?"nope/);
  });
});
