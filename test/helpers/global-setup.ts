/**
 * Finds the RabbitMQ and Redis the integration tests use: RABBITMQ_URL / REDIS_URL when set,
 * else the services on 127.0.0.1 when they answer, else containers started with testcontainers
 * (on machines with a Docker engine). Fails with a clear message when none is available.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import type { TestProject } from 'vitest/node';
import { deleteInboxes } from '../../bench/load/queues.js';

declare module 'vitest' {
  export interface ProvidedContext {
    rabbitmqUrl: string;
    redisUrl: string;
    /** A file every `uid()` of this run is appended to; teardown removes what they named. */
    idLog: string;
  }
}

function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.setTimeout(1_000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(false));
  });
}

const stops: (() => Promise<unknown>)[] = [];

export async function setup(project: TestProject): Promise<void> {
  // Crash and signal tests run the compiled relay as a child process.
  execFileSync(process.execPath, ['scripts/build-if-needed.mjs'], { stdio: 'inherit' });
  let rabbitmqUrl = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
  let redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const rabbitUp = await reachable(rabbitmqUrl);
  const redisUp = await reachable(redisUrl);
  if ((!rabbitUp && process.env.RABBITMQ_URL === undefined) || (!redisUp && process.env.REDIS_URL === undefined)) {
    const { GenericContainer, Wait } = await import('testcontainers');
    if (!rabbitUp) {
      const rabbit = await new GenericContainer('rabbitmq:3.13-management')
        .withExposedPorts(5672)
        .withWaitStrategy(Wait.forLogMessage('Server startup complete'))
        .start();
      stops.push(() => rabbit.stop());
      rabbitmqUrl = `amqp://guest:guest@${rabbit.getHost()}:${rabbit.getMappedPort(5672)}`;
    }
    if (!redisUp) {
      const redis = await new GenericContainer('redis:7').withExposedPorts(6379).start();
      stops.push(() => redis.stop());
      redisUrl = `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`;
    }
  } else if (!rabbitUp || !redisUp) {
    throw new Error(
      `integration tests need RabbitMQ (${rabbitmqUrl}: ${rabbitUp ? 'up' : 'down'}) and Redis (${redisUrl}: ${redisUp ? 'up' : 'down'})`,
    );
  }
  project.provide('rabbitmqUrl', rabbitmqUrl);
  project.provide('redisUrl', redisUrl);
  const idLog = join(mkdtempSync(join(tmpdir(), 'inbox-relay-test-')), 'ids.txt');
  writeFileSync(idLog, '');
  project.provide('idLog', idLog);
  stops.push(() => removeTestState(idLog, rabbitmqUrl, redisUrl));
}

export async function teardown(): Promise<void> {
  for (const stop of stops) await stop();
}

/**
 * Deletes the queues (`inbox.<id>`) and Redis keys (`<id>:...`) of this run's unique names, so
 * that runs do not pile up queues on a shared broker (thousands of them slow it down, and with a
 * low open-files limit hang it). Best effort and bounded: a failure here never fails the run.
 */
async function removeTestState(idLog: string, rabbitmqUrl: string, redisUrl: string): Promise<void> {
  const ids = [...new Set(readFileSync(idLog, 'utf8').split('\n').filter(Boolean))];
  rmSync(dirname(idLog), { recursive: true, force: true });
  if (ids.length === 0) return;
  const deadline = Date.now() + 60_000;
  try {
    const result = await deleteInboxes(rabbitmqUrl, ids, deadline);
    if (result.done < ids.length)
      console.warn(`[teardown] deleted ${result.done} of ${ids.length} test queues: ${result.errors.join('; ')}`);
  } catch (error) {
    console.warn(`[teardown] could not delete test queues: ${(error as Error).message}`);
  }
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const prefixes = new Set(ids);
    let cursor = '0';
    do {
      const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', '*-*:*', 'COUNT', 1000);
      cursor = nextCursor;
      const mine = keys.filter((key) => prefixes.has(key.slice(0, key.indexOf(':'))));
      if (mine.length > 0) await redis.del(...mine);
    } while (cursor !== '0' && Date.now() < deadline);
  } catch (error) {
    console.warn(`[teardown] could not remove test keys from Redis: ${(error as Error).message}`);
  } finally {
    redis.disconnect();
  }
}
