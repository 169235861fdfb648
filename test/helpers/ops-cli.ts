/**
 * Runs the operator CLI for tests: in-process through `runCli` (fast, same code as the binary),
 * or as the compiled executable after a build (a long-running `serve` goes through
 * src/process/relay-process.ts). Also a raw AMQP helper for arranging queues.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import amqp, { type ChannelModel, type Options } from 'amqplib';
import { runCli } from '../../src/cli/run.js';

const run = promisify(execFile);

export interface CliResult {
  code: number | 'running';
  stdout: string;
  stderr: string;
  /** stdout parsed as the one JSON document `--json` prints. */
  json<T = Record<string, unknown>>(): T;
}

function result(code: number | 'running', stdout: string, stderr: string): CliResult {
  return {
    code,
    stdout,
    stderr,
    json<T>() {
      try {
        return JSON.parse(stdout) as T;
      } catch {
        throw new Error(`CLI output is not JSON (exit ${code}):\n${stdout}\nstderr:\n${stderr}`);
      }
    },
  };
}

/** Runs `inbox-relay <args>` in-process with exactly `env` as its environment. */
export async function cli(args: string[], env: Record<string, string | undefined>): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env,
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
  });
  return result(code, stdout, stderr);
}

/** Builds dist/ when it is older than the sources (scripts/build-if-needed.mjs); throws with tsc's output on errors. */
export async function buildDist(): Promise<void> {
  try {
    await run(process.execPath, ['scripts/build-if-needed.mjs'], { maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`build failed:\n${stdout ?? ''}${stderr ?? ''}`, { cause: error });
  }
}

/** Runs a compiled entry point (`dist/src/cli/main.js` ...) to completion. */
export async function runCompiled(script: string, args: string[], env: Record<string, string | undefined>): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [script, ...args], { env, timeout: 60_000 });
    return result(0, stdout, stderr);
  } catch (error) {
    const failed = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failed.code !== 'number') throw error;
    return result(failed.code, failed.stdout ?? '', failed.stderr ?? '');
  }
}

/** Runs `npm <args>` in the project directory (npm from PATH). */
export async function runNpm(args: string[], env: Record<string, string | undefined>): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run('npm', args, { env, timeout: 120_000 });
    return result(0, stdout, stderr);
  } catch (error) {
    const failed = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failed.code !== 'number') throw error;
    return result(failed.code, failed.stdout ?? '', failed.stderr ?? '');
  }
}

/** A raw AMQP connection for arranging and checking queues in tests. */
export class AmqpFixture {
  private constructor(readonly model: ChannelModel) {}

  static async open(url: string): Promise<AmqpFixture> {
    const model = await amqp.connect(url);
    model.on('error', () => undefined);
    return new AmqpFixture(model);
  }

  /** Declares a private queue shaped like inbox.dead (quorum) and returns its name. */
  async privateQueue(name: string, args: Record<string, unknown> = { 'x-queue-type': 'quorum' }): Promise<string> {
    const channel = await this.model.createChannel();
    channel.on('error', () => undefined);
    await channel.assertQueue(name, { durable: true, arguments: args });
    await channel.close();
    return name;
  }

  async bind(queue: string, exchange: string, key = ''): Promise<void> {
    const channel = await this.model.createChannel();
    channel.on('error', () => undefined);
    await channel.bindQueue(queue, exchange, key);
    await channel.close();
  }

  /** Publishes to a queue through the default exchange and waits for the confirm. */
  async put(queue: string, body: string | Buffer, options: Options.Publish): Promise<void> {
    const channel = await this.model.createConfirmChannel();
    channel.on('error', () => undefined);
    channel.sendToQueue(queue, Buffer.isBuffer(body) ? body : Buffer.from(body), { persistent: true, ...options });
    await channel.waitForConfirms();
    await channel.close();
  }

  /**
   * Takes every ready message of a queue (acking them), in order. Consumes rather than gets:
   * quorum queues with single active consumer (every inbox) refuse basic.get.
   */
  async drainQueue(queue: string, timeoutMs = 10_000): Promise<amqp.ConsumeMessage[]> {
    const count = await this.depth(queue);
    if (!count) return [];
    const channel = await this.model.createChannel();
    channel.on('error', () => undefined);
    const messages: amqp.ConsumeMessage[] = [];
    try {
      await channel.prefetch(count, false);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`got ${messages.length} of ${count} messages from ${queue}`)), timeoutMs);
        channel
          .consume(queue, (message) => {
            if (!message) return;
            messages.push(message);
            if (messages.length === count) {
              clearTimeout(timer);
              channel.ack(message, true);
              resolve();
            }
          })
          .catch((error: unknown) => {
            clearTimeout(timer);
            reject(error instanceof Error ? error : new Error(String(error)));
          });
      });
    } finally {
      await channel.close().catch(() => undefined);
    }
    return messages;
  }

  /** Ready messages of a queue, or undefined when it does not exist. */
  async depth(queue: string): Promise<number | undefined> {
    const channel = await this.model.createChannel();
    channel.on('error', () => undefined);
    try {
      return (await channel.checkQueue(queue)).messageCount;
    } catch {
      return undefined;
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  async deleteQueue(queue: string): Promise<void> {
    const channel = await this.model.createChannel();
    channel.on('error', () => undefined);
    await channel.deleteQueue(queue).catch(() => undefined);
    await channel.close().catch(() => undefined);
  }

  close(): Promise<void> {
    return this.model.close().catch(() => undefined);
  }
}

/** An x-death header as RabbitMQ writes it when a message dies in `queue`. */
export function xDeath(queue: string, routingKey: string, reason = 'rejected'): Record<string, unknown> {
  return {
    'x-death': [
      {
        count: 1,
        reason,
        queue,
        time: { '!': 'timestamp', value: Math.floor(Date.now() / 1000) },
        exchange: 'inbox',
        'routing-keys': [routingKey],
      },
    ],
    'x-first-death-queue': queue,
    'x-first-death-reason': reason,
    'x-first-death-exchange': 'inbox',
  };
}
