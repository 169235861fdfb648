/**
 * Finds the RabbitMQ and Redis the integration tests use: RABBITMQ_URL / REDIS_URL when set,
 * else the services on 127.0.0.1 when they answer, else containers started with testcontainers
 * (on machines with a Docker engine). Fails with a clear message when none is available.
 */
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    rabbitmqUrl: string;
    redisUrl: string;
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
    throw new Error(`integration tests need RabbitMQ (${rabbitmqUrl}: ${rabbitUp ? 'up' : 'down'}) and Redis (${redisUrl}: ${redisUp ? 'up' : 'down'})`);
  }
  project.provide('rabbitmqUrl', rabbitmqUrl);
  project.provide('redisUrl', redisUrl);
}

export async function teardown(): Promise<void> {
  for (const stop of stops) await stop();
}
