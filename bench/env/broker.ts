/**
 * Prepares RabbitMQ for the bench: checks the broker's open-files limit (restarting it with a
 * raised one when allowed: with 1024, classic queues hang, see ops/README.md) and enables the
 * Web-STOMP plugin.
 */
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { openFilesLimit, pidsOf } from './proc.js';
import { sleep } from '../lib/time.js';

const run = promisify(execFile);

export const WEB_STOMP_URL = 'ws://127.0.0.1:15674/ws';
export const RAISED_FD_LIMIT = 20_000;

export function brokerPid(): number | undefined {
  return pidsOf('beam.smp', 'rabbitmq')[0];
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port }, () => {
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

export async function brokerVersion(): Promise<string> {
  try {
    const { stdout } = await run('rabbitmqctl', ['version'], { timeout: 30_000 });
    return stdout.trim();
  } catch {
    return 'unknown';
  }
}

export interface FdCheck {
  limit: number | undefined;
  restarted: boolean;
  warning?: string;
}

/**
 * Checks the broker's soft open-files limit. At 1024 classic queues hang with ~1000 queues and
 * Web-STOMP cannot hold 1000 sockets; when `allowRestart`, the broker is restarted with
 * `ulimit -n 20000` (its hard limit) and the bench waits for it.
 */
export async function ensureBrokerFdLimit(needed: number, allowRestart: boolean, log: (line: string) => void): Promise<FdCheck> {
  const pid = brokerPid();
  const limit = pid === undefined ? undefined : openFilesLimit(pid);
  if (limit === undefined)
    return { limit, restarted: false, warning: "could not read the broker's open-files limit (is beam.smp running as rabbitmq?)" };
  if (limit >= needed) return { limit, restarted: false };
  const warning = `WARNING: RabbitMQ's open-files limit is ${limit} (need about ${needed}): classic queues hang and Web-STOMP runs out of sockets (ops/README.md, open files)`;
  log(warning);
  if (!allowRestart || process.getuid?.() !== 0)
    return { limit, restarted: false, warning: `${warning}; not restarted (--no-broker-restart or not root)` };
  log(`restarting RabbitMQ with ulimit -n ${RAISED_FD_LIMIT}`);
  await run('rabbitmqctl', ['stop'], { timeout: 60_000 }).catch(() => undefined);
  for (let i = 0; i < 60 && brokerPid() !== undefined; i += 1) await sleep(500);
  await run('su', ['rabbitmq', '-s', '/bin/sh', '-c', `ulimit -n ${RAISED_FD_LIMIT}; /usr/lib/rabbitmq/bin/rabbitmq-server -detached`], {
    timeout: 60_000,
  });
  await run('rabbitmqctl', ['await_startup', '--timeout', '120'], { timeout: 130_000 });
  for (let i = 0; i < 60 && !(await portOpen(5672)); i += 1) await sleep(500);
  const after = brokerPid();
  const raised = after === undefined ? undefined : openFilesLimit(after);
  log(`RabbitMQ restarted: open-files limit ${raised ?? 'unknown'}`);
  return { limit: raised, restarted: true, ...(raised !== undefined && raised >= needed ? {} : { warning }) };
}

function webStompAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: 15674, path: '/ws', timeout: 2_000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** Enables rabbitmq_web_stomp if needed; resolves to undefined when it answers, else the reason to skip. */
export async function ensureWebStomp(log: (line: string) => void): Promise<string | undefined> {
  if (await webStompAnswers()) return undefined;
  log('enabling the rabbitmq_web_stomp plugin');
  try {
    await run('rabbitmq-plugins', ['enable', 'rabbitmq_web_stomp'], { timeout: 120_000 });
  } catch (error) {
    return `cannot enable rabbitmq_web_stomp: ${(error as Error).message.split('\n')[0]}`;
  }
  for (let i = 0; i < 60; i += 1) {
    if (await webStompAnswers()) return undefined;
    await sleep(500);
  }
  return 'rabbitmq_web_stomp is enabled but ws://127.0.0.1:15674/ws does not answer';
}
