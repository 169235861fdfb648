/**
 * One run of the demo, start to finish: a relay process on free ports with a random JWT secret
 * and a Redis key prefix of its own, a producer, one client per user, the scenario, then
 * cleanup. Whatever happens, it closes the clients and producer, stops the relay, and deletes
 * the run's inbox queues and Redis keys before it returns or throws.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Producer } from '../amqp/producer.js';
import { loadConfig } from '../config.js';
import { errorMessage } from '../errors.js';
import { freePort } from '../process/free-port.js';
import { RelayProcess, type RelayProcessOptions } from '../process/relay-process.js';
import { signDevToken } from '../server/auth.js';
import type { DemoArgs } from './args.js';
import { DemoClient } from './demo-client.js';
import { UserLedger } from './ledger.js';
import type { Narrator } from './narrator.js';
import { Publisher } from './publisher.js';
import { summarize, type Summary } from './report.js';
import { runScenario } from './scenario.js';
import type { Services } from './services.js';

const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy'];
const TOKEN_LIFETIME_S = 600;
const DEMO_ISSUER = 'inbox-relay-demo';
const DEMO_AUDIENCE = 'inbox-relay';
const CLIENT_START_TIMEOUT_MS = 10_000;
const PUBLISH_TIMEOUT_MS = 5_000;
const RELAY_READY_TIMEOUT_MS = 20_000;

/** The `msg` of a pino JSON line, or the line itself. */
function logMessage(line: string): string {
  try {
    const parsed = JSON.parse(line) as { msg?: unknown };
    return typeof parsed.msg === 'string' ? parsed.msg : line;
  } catch {
    return line;
  }
}

export interface DemoRunOptions {
  readonly args: DemoArgs;
  readonly rabbitmqUrl: string;
  readonly redisUrl: string;
  readonly services: Services;
  readonly narrator: Narrator;
  readonly signal: AbortSignal;
  /** Epoch ms by which the scenario must be over (cleanup comes after). */
  readonly deadline: number;
}

/** Runs the demo and returns its summary; throws (after cleaning up) if it could not run. */
export async function runDemo(options: DemoRunOptions): Promise<Summary> {
  const { args, narrator, services } = options;
  const started = Date.now();
  const runId = randomUUID().slice(0, 8);
  const [port, adminPort] = [await freePort(), await freePort()];
  const secret = randomBytes(32).toString('base64url');
  const keyPrefix = `demo-${runId}:`;
  const env = {
    RABBITMQ_URL: options.rabbitmqUrl,
    REDIS_URL: options.redisUrl,
    HOST: '127.0.0.1',
    PORT: String(port),
    ADMIN_PORT: String(adminPort),
    JWT_SECRET: secret,
    // Tokens name who issued them and for whom, as production tokens should (else the relay warns).
    JWT_ISSUER: DEMO_ISSUER,
    JWT_AUDIENCE: DEMO_AUDIENCE,
    REDIS_KEY_PREFIX: keyPrefix,
    LOG_LEVEL: 'warn',
  };
  const config = loadConfig(env);
  const ledgers = Array.from({ length: args.users }, (_, i) => {
    const name = NAMES[i] ?? `user${i + 1}`;
    return new UserLedger(`demo-${runId}.${name}`, name);
  });
  const relayOptions: RelayProcessOptions = {
    env,
    adminPort,
    readyTimeoutMs: RELAY_READY_TIMEOUT_MS,
    onLine: (line) => narrator.say('relay', `log: ${logMessage(line)}`),
  };
  const producer = new Producer({
    url: config.rabbitmqUrl,
    provision: { queueType: config.queueType, queueMaxLength: config.queueMaxLength, queueDeliveryLimit: config.queueDeliveryLimit },
    publishTimeoutMs: PUBLISH_TIMEOUT_MS,
  });
  const clients = ledgers.map(
    (ledger) =>
      new DemoClient({
        name: ledger.name,
        user: ledger.user,
        url: `ws://127.0.0.1:${port}`,
        token: () =>
          signDevToken(ledger.user, secret, { expiresInSeconds: TOKEN_LIFETIME_S, issuer: DEMO_ISSUER, audience: DEMO_AUDIENCE }),
        narrator,
        onMessage: (message) => ledger.processed(message),
        startTimeoutMs: CLIENT_START_TIMEOUT_MS,
      }),
  );
  let relay: RelayProcess | undefined;
  let elapsedMs: number;
  try {
    narrator.say('demo', `run ${runId}: ${args.users} user(s) x ${args.messages} messages; relay on ws://127.0.0.1:${port}`);
    relay = await RelayProcess.start(relayOptions);
    narrator.say('relay', `started (pid ${relay.pid})`);
    await Promise.all(clients.map((client) => client.start()));
    const stage = {
      narrator,
      clients,
      ledgers,
      publisher: new Publisher(producer, ledgers, narrator, options.signal),
      signal: options.signal,
      deadline: options.deadline,
      restartRelay: async (signal: 'SIGTERM' | 'SIGKILL') => {
        const old = relay;
        if (!old) return;
        narrator.say(
          'relay',
          signal === 'SIGTERM'
            ? 'SIGTERM: draining, clients are told 1012 (restarting)'
            : 'SIGKILL: crash, clients just lose their sockets',
        );
        const exit = await old.stop(signal);
        narrator.say(
          'relay',
          `pid ${old.pid} gone after ${exit.ms} ms (${exit.signal ?? `exit code ${exit.code}`}); starting a new one on port ${port}`,
        );
        relay = await RelayProcess.start(relayOptions);
        narrator.say('relay', `started again (pid ${relay.pid})`);
      },
    };
    await runScenario(stage, args.messages);
    elapsedMs = Date.now() - started;
  } finally {
    await cleanUp();
  }
  return summarize(
    runId,
    ledgers,
    clients.map((client) => client.stats()),
    elapsedMs,
  );

  async function cleanUp(): Promise<void> {
    narrator.say('demo', 'cleaning up: clients, producer, relay, queues, Redis keys');
    await Promise.all(
      clients.map((client) => client.close().catch((error: unknown) => narrator.warn(client.name, `close failed: ${errorMessage(error)}`))),
    );
    await producer.close().catch(() => undefined);
    if (relay) {
      const exit = await relay.stop('SIGTERM');
      if (exit.code !== 0 && exit.code !== null) narrator.warn('relay', `exited with code ${exit.code} on SIGTERM:\n${relay.lastOutput()}`);
    }
    const users = ledgers.map((ledger) => ledger.user);
    await services.deleteInboxes(users).then(
      (count) => narrator.say('demo', `deleted ${count} inbox queue(s)`),
      (error: unknown) => narrator.warn('demo', `could not delete the inbox queues: ${errorMessage(error)}`),
    );
    await services.deleteKeys(keyPrefix).then(
      (count) => narrator.say('demo', `deleted ${count} Redis key(s) under ${keyPrefix}`),
      (error: unknown) => narrator.warn('demo', `could not delete the Redis keys under ${keyPrefix}: ${errorMessage(error)}`),
    );
  }
}
