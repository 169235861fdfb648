/**
 * `npm run demo` end to end: the compiled demo (built by the global setup) against the test
 * RabbitMQ and Redis, as a newcomer runs it; its cleanup; its refusal to run without Redis; and
 * its verdict, which must fail when a sent message was not processed or arrived out of order.
 */
import { spawn } from 'node:child_process';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { ClientStats, InboxMessage } from '../../src/client/index.js';
import { UserLedger } from '../../src/demo/ledger.js';
import { renderSummary, summarize } from '../../src/demo/report.js';
import { rabbitmqUrl, redisUrl } from '../helpers/relay.js';

interface DemoRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the compiled demo with only PATH and the given variables as its environment. */
function runDemo(args: string[], env: Record<string, string>, timeoutMs = 90_000): Promise<DemoRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['dist/src/demo/main.js', ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`demo still running after ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The summary's header and one of its rows, by column name. */
function summaryRow(stdout: string, name: string): Record<string, string> {
  const lines = stdout.split('\n');
  const header = lines
    .find((line) => line.startsWith('user '))
    ?.trim()
    .split(/\s+/);
  const row = lines
    .find((line) => line.startsWith(`${name} `))
    ?.trim()
    .split(/\s+/);
  if (!header || !row) throw new Error(`no summary row ${name} in:\n${stdout}`);
  return Object.fromEntries(header.map((column, i) => [column, row[i] ?? '']));
}

function message(seq: number, n: number, epoch = 'e1'): InboxMessage {
  return { epoch, seq, id: `m${n}`, ts: 0, redelivered: false, contentType: 'application/json', data: { n, text: '' } };
}

const NO_STATS: ClientStats = {
  received: 0,
  processed: 0,
  duplicates: 0,
  outOfSequence: 0,
  requeued: 0,
  deadLettered: 0,
  acksSent: 0,
  nacksSent: 0,
  connections: 1,
};

describe('npm run demo', () => {
  it('delivers every sent message across a cut, a client restart and two relay restarts, then cleans up', async () => {
    const run = await runDemo(['--users', '2', '--messages', '10', '--quiet'], { RABBITMQ_URL: rabbitmqUrl(), REDIS_URL: redisUrl() });
    const output = `exit ${run.code}\n${run.stdout}\n${run.stderr}`;
    expect(run.code, output).toBe(0);
    const total = summaryRow(run.stdout, 'total');
    expect(total, output).toMatchObject({ sent: '20', delivered: '20', lost: '0', order: 'ok' });
    for (const name of ['alice', 'bob']) {
      const user = summaryRow(run.stdout, name);
      expect(user, output).toMatchObject({ sent: '10', delivered: '10', lost: '0', order: 'ok' });
      // Every client reconnected at least across the two relay restarts.
      expect(Number(user.reconnects), output).toBeGreaterThanOrEqual(2);
    }
    expect(run.stdout, output).toContain('PASS');
    // --quiet: the summary only, no narration.
    expect(run.stdout, output).not.toContain('act 1');

    const runId = /Summary of run (\S+)/.exec(run.stdout)?.[1];
    expect(runId, output).toBeDefined();
    const redis = new Redis(redisUrl(), { lazyConnect: true });
    try {
      await redis.connect();
      const [, keys] = await redis.scan('0', 'MATCH', `demo-${runId}:*`, 'COUNT', 1000);
      expect(keys).toEqual([]);
    } finally {
      redis.disconnect();
    }
    const model = await amqp.connect(rabbitmqUrl());
    try {
      for (const name of ['alice', 'bob']) {
        const channel = await model.createChannel();
        channel.on('error', () => undefined);
        await expect(channel.checkQueue(`inbox.demo-${runId}.${name}`)).rejects.toMatchObject({ code: 404 });
      }
    } finally {
      await model.close();
    }
  });

  it('exits 2 and names Redis when Redis is unreachable', async () => {
    const run = await runDemo(['--quiet'], { RABBITMQ_URL: rabbitmqUrl(), REDIS_URL: 'redis://127.0.0.1:1' }, 30_000);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain('Redis is not reachable at redis://127.0.0.1:1');
  });

  it('fails the verdict when a sent message was not processed', () => {
    const ledger = new UserLedger('u', 'alice');
    ledger.sent.push('m1', 'm2', 'm3');
    ledger.processed(message(1, 1));
    ledger.processed(message(2, 3));
    const summary = summarize('r', [ledger], [NO_STATS], 0);
    expect(summary.total).toMatchObject({ sent: 3, delivered: 2, lost: 1, ordered: true });
    expect(summary.passed).toBe(false);
    expect(renderSummary(summary)).toContain('FAIL: 1 lost');
  });

  it('fails the verdict when messages arrive out of order', () => {
    const ledger = new UserLedger('u', 'alice');
    ledger.sent.push('m1', 'm2', 'm3');
    ledger.processed(message(1, 1));
    ledger.processed(message(2, 3));
    ledger.processed(message(4, 2));
    const summary = summarize('r', [ledger], [NO_STATS], 0);
    expect(summary.total).toMatchObject({ lost: 0, ordered: false });
    expect(summary.passed).toBe(false);
    expect(summary.notes.join('\n')).toContain('n 2 after n 3');
    expect(summary.notes.join('\n')).toContain('seq 4 after seq 2');
  });
});
