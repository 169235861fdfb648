/**
 * Every command written in a runbook exists and is either run here or marked external:
 * - `sh` blocks: inbox-relay CLI commands, each run against the real RabbitMQ and Redis
 *   (placeholders filled with a fresh user; dead-letter commands pointed at a private copy of
 *   inbox.dead with --queue; drain at a relay started for it) and expected to succeed;
 * - `sh external` blocks: rabbitmqctl, rabbitmq-queues, rabbitmq-diagnostics, redis-cli, kubectl
 *   and curl, whose subcommands are checked against the installed tool (or a known list where it
 *   is not installed; Sentinel's subcommands always against a list); a CLI command run through
 *   `kubectl exec` is checked by the CLI's parser;
 * - inline `inbox-relay ...` code in the text: checked by the CLI's parser.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inboxQueueName } from '../../src/amqp/topology.js';
import { parseInvocation } from '../../src/cli/commands.js';
import { AmqpFixture, cli, xDeath } from '../helpers/ops-cli.js';
import { runbookCommands, substitute, type RunbookCommand } from '../helpers/ops-runbook-commands.js';
import { rabbitmqUrl, redisUrl, startTestRelay, testConfig, testEnv, uid } from '../helpers/relay.js';

const commands = runbookCommands();
const exercised = commands.filter((command) => command.kind === 'exercised');
const external = commands.filter((command) => command.kind === 'external');
const inline = commands.filter((command) => command.kind === 'inline');
const where = (command: RunbookCommand) => `${command.file}:${command.line}: ${command.source}`;

const EXTERNAL_TOOLS = new Set(['rabbitmqctl', 'rabbitmq-queues', 'rabbitmq-diagnostics', 'redis-cli', 'kubectl', 'curl']);
const ADMIN_PATHS = new Set(['/healthz', '/readyz', '/metrics', '/drain']);
/** Used where the tool is not installed; checked against the installed tool otherwise. */
const KUBECTL_VERBS = new Set(['get', 'describe', 'logs', 'exec', 'rollout', 'patch', 'delete', 'top', 'port-forward', 'scale', 'apply']);
const RABBITMQCTL_COMMANDS = new Set([
  'status',
  'list_queues',
  'list_connections',
  'list_consumers',
  'set_disk_free_limit',
  'set_vm_memory_high_watermark',
  'close_connection',
]);

/** Used where the RabbitMQ CLI tools are not installed; checked against the installed tools otherwise. */
const RABBITMQ_TOOL_COMMANDS: Record<string, Set<string>> = {
  'rabbitmq-queues': new Set([
    'quorum_status',
    'rebalance',
    'grow',
    'shrink',
    'add_member',
    'delete_member',
    'check_if_node_is_quorum_critical',
  ]),
  'rabbitmq-diagnostics': new Set(['status', 'check_running', 'cluster_status', 'check_if_node_is_quorum_critical', 'log_tail']),
};
/**
 * Subcommands of SENTINEL, for redis-cli commands sent to a sentinel: the test's Redis is no
 * sentinel, and COMMAND INFO there does not list them.
 */
const SENTINEL_SUBCOMMANDS = new Set([
  'get-master-addr-by-name',
  'master',
  'masters',
  'replicas',
  'slaves',
  'sentinels',
  'ckquorum',
  'failover',
  'myid',
  'info-cache',
  'is-master-down-by-addr',
]);

function installed(tool: string, args: string[]): string | undefined {
  try {
    return execFileSync(tool, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  } catch (error) {
    const failed = error as { code?: string; stdout?: string };
    if (failed.code === 'ENOENT') return undefined;
    return failed.stdout ?? '';
  }
}

/** The first argument that is not an option (nor an option's value, for options listed as taking one). */
function firstWord(args: string[], optionsWithValue: Set<string>): { word: string | undefined; rest: string[] } {
  for (let i = 0; i < args.length; i += 1) {
    const arg = args[i]!;
    if (arg.startsWith('-')) {
      if (optionsWithValue.has(arg)) i += 1;
      continue;
    }
    return { word: arg, rest: args.slice(i + 1) };
  }
  return { word: undefined, rest: [] };
}

describe('runbook commands', () => {
  it('are all written as sh (run here) or sh external (checked) blocks, and there are some of each', () => {
    expect(exercised.length).toBeGreaterThanOrEqual(10);
    expect(external.length).toBeGreaterThanOrEqual(20);
    for (const command of exercised) expect(command.program, where(command)).toBe('inbox-relay');
    for (const command of external) expect(EXTERNAL_TOOLS.has(command.program), where(command)).toBe(true);
  });

  it('parse with the CLI parser, inline mentions included', () => {
    const values = { user: 'some-user', 'admin-url': 'http://127.0.0.1:9090' };
    for (const command of [...exercised, ...inline]) {
      expect(() => parseInvocation(substitute(command.args, values)), where(command)).not.toThrow();
    }
  });

  describe('run against the real broker and store', () => {
    let fixture: AmqpFixture;
    let deadQueue: string;
    const user = uid('ops-rb');
    const cleanup: string[] = [inboxQueueName(user)];
    beforeAll(async () => {
      fixture = await AmqpFixture.open(rabbitmqUrl());
      deadQueue = await fixture.privateQueue(uid('ops-rb-dead'));
      cleanup.push(deadQueue);
      for (let i = 0; i < 3; i += 1) {
        await fixture.put(deadQueue, JSON.stringify({ i }), {
          messageId: `rb-${i}`,
          contentType: 'application/json',
          headers: xDeath(inboxQueueName(user), user),
        });
      }
    });
    afterAll(async () => {
      for (const queue of cleanup) await fixture.deleteQueue(queue);
      await fixture.close();
    });

    for (const [index, command] of exercised.entries()) {
      it(`#${index + 1} ${command.file}: ${command.source}`, async () => {
        const invocation = parseInvocation(substitute(command.args, { user, 'admin-url': 'http://127.0.0.1:9' }));
        expect(invocation.spec.name, 'runbooks do not start relays').not.toBe('serve');
        const env = { ...testEnv({ RABBITMQ_MANAGEMENT_URL: '' }), ...command.env };
        if (invocation.spec.name === 'drain') {
          // As deployed: the relay requires ADMIN_TOKEN, and the operator's environment (the pod's,
          // or a workstation's after exporting it) holds the same value.
          const adminToken = `runbook-admin-${randomUUID()}`;
          const relay = await startTestRelay(testConfig({ ADMIN_TOKEN: adminToken }));
          try {
            const args = substitute(command.args, { user, 'admin-url': `http://127.0.0.1:${relay.relay.adminPort}` });
            const run = await cli(args, { ...env, ADMIN_TOKEN: adminToken });
            expect(run.code, `${where(command)}\n${run.stderr}`).toBe(0);
            expect(relay.relay.ready).toBe(false);
          } finally {
            await relay.stop();
          }
          return;
        }
        const args = substitute(command.args, { user, 'admin-url': 'http://127.0.0.1:9' });
        // Dead-letter commands work on a private copy of inbox.dead, never on the shared one.
        if (invocation.spec.name.startsWith('dlq ')) {
          expect(args, `${where(command)}: runbooks use the default queue`).not.toContain('--queue');
          args.push('--queue', deadQueue);
        }
        const run = await cli(args, env);
        expect(run.code, `${where(command)}\n${run.stderr}`).toBe(0);
      });
    }
  });

  describe('external commands', () => {
    it('use rabbitmqctl commands that exist', () => {
      const help = installed('rabbitmqctl', ['help']);
      const known =
        help === undefined ? RABBITMQCTL_COMMANDS : new Set([...help.matchAll(/^\s{3}([a-z_]+)\s/gm)].map((match) => match[1]!));
      if (help !== undefined) expect(known.size).toBeGreaterThan(50);
      for (const command of external.filter((c) => c.program === 'rabbitmqctl')) {
        const { word } = firstWord(command.args, new Set(['-n', '--node', '-t', '--timeout']));
        expect(word && known.has(word), where(command)).toBe(true);
      }
    });

    it('use rabbitmq-queues and rabbitmq-diagnostics commands that exist', () => {
      const used = external.filter((c) => c.program in RABBITMQ_TOOL_COMMANDS);
      expect(used.length).toBeGreaterThan(0);
      for (const [tool, fallback] of Object.entries(RABBITMQ_TOOL_COMMANDS)) {
        const help = installed(tool, ['help']);
        const known = help === undefined ? fallback : new Set([...help.matchAll(/^\s{3}([a-z_]+)\s/gm)].map((match) => match[1]!));
        if (help !== undefined) expect(known.size, tool).toBeGreaterThan(5);
        for (const command of used.filter((c) => c.program === tool)) {
          const { word } = firstWord(command.args, new Set(['-n', '--node', '-t', '--timeout']));
          expect(word && known.has(word), where(command)).toBe(true);
        }
      }
    });

    it('use redis-cli commands that exist (asked of the test Redis)', async () => {
      const redis = new Redis(redisUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
      await redis.connect();
      try {
        for (const command of external.filter((c) => c.program === 'redis-cli')) {
          const { word } = firstWord(command.args, new Set(['-u', '-h', '-p', '-a', '-n', '--user', '--pass', '--pattern']));
          expect(word, where(command)).toBeDefined();
          if (word!.toUpperCase() === 'SENTINEL') {
            const { word: subcommand } = firstWord(command.args.slice(command.args.indexOf(word!) + 1), new Set());
            expect(subcommand && SENTINEL_SUBCOMMANDS.has(subcommand.toLowerCase()), where(command)).toBe(true);
            continue;
          }
          const info = (await redis.call('COMMAND', 'INFO', word!.toLowerCase())) as unknown[];
          expect(info[0], where(command)).not.toBeNull();
          if (command.args.includes('-u')) expect(command.args[command.args.indexOf('-u') + 1], where(command)).toBe('$REDIS_URL');
        }
      } finally {
        redis.disconnect();
      }
    });

    it('use kubectl verbs that exist, and CLI commands the CLI accepts', () => {
      const help = installed('kubectl', ['help']);
      const verbs = help === undefined ? KUBECTL_VERBS : new Set([...help.matchAll(/^\s{2}([a-z-]+)\s{2,}/gm)].map((match) => match[1]!));
      for (const command of external.filter((c) => c.program === 'kubectl')) {
        const { word, rest } = firstWord(command.args, new Set(['-n', '--namespace', '-l', '--selector', '-o', '-c', '--container', '-p']));
        expect(word && verbs.has(word), where(command)).toBe(true);
        if (word === 'rollout') expect(['status', 'restart', 'pause', 'resume', 'undo', 'history']).toContain(rest[0]);
        const separator = command.args.indexOf('--');
        if (separator >= 0 && command.args[separator + 1] === 'inbox-relay') {
          const inner = substitute(command.args.slice(separator + 2), { user: 'some-user' });
          expect(() => parseInvocation(inner), where(command)).not.toThrow();
        }
      }
    });

    it('use curl only against the admin endpoints the relay serves', () => {
      for (const command of external.filter((c) => c.program === 'curl')) {
        const urls = command.args.filter((arg) => /^https?:\/\//.test(arg));
        expect(urls, where(command)).toHaveLength(1);
        const url = new URL(urls[0]!);
        if (url.port === '9090') expect(ADMIN_PATHS.has(url.pathname), where(command)).toBe(true);
      }
    });
  });
});
