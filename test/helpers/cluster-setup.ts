/**
 * Global setup of the `cluster` project: the local 3-node RabbitMQ cluster and the Redis Sentinel
 * set (scripts/rabbitmq-cluster.sh, scripts/redis-sentinel.sh). Each is brought up unless it already
 * runs, and taken down at the end only when this run started it, so a cluster someone brought up by
 * hand to iterate on a test stays up.
 */
import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { isUp, RABBITMQ_SCRIPT, REDIS_SCRIPT, script } from './local-cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The cluster's AMQP URLs, comma-separated (the RABBITMQ_URL list form). */
    clusterRabbitmqUrls: string;
    /** The sentinels, host:port comma-separated (the REDIS_SENTINELS form). */
    clusterRedisSentinels: string;
  }
}

const started: string[] = [];

/** Brings one set up unless it runs; resolves to what its `up` prints (the URL or sentinel list). */
async function bringUp(path: string, list: string): Promise<string> {
  if (await isUp(path)) return script(path, [list]);
  started.push(path);
  const begun = Date.now();
  const out = await script(path, ['up'], 300_000);
  console.log(`[cluster-setup] ${path} up in ${((Date.now() - begun) / 1000).toFixed(1)} s`);
  return out;
}

export async function setup(project: TestProject): Promise<void> {
  // Tests that run the relay as a child process run dist/.
  execFileSync(process.execPath, ['scripts/build-if-needed.mjs'], { stdio: 'inherit' });
  try {
    // Redis first and alone: it is up in seconds, and the broker's three nodes want both cores.
    const sentinels = await bringUp(REDIS_SCRIPT, 'sentinels');
    const urls = await bringUp(RABBITMQ_SCRIPT, 'urls');
    project.provide('clusterRabbitmqUrls', urls.trim());
    project.provide('clusterRedisSentinels', sentinels.trim());
  } catch (error) {
    // No teardown follows a failed setup: take down here what this run started.
    await teardown().catch(() => undefined);
    throw error;
  }
}

export async function teardown(): Promise<void> {
  while (started.length > 0) await script(started.pop()!, ['down'], 180_000);
}
