/**
 * The command line of `inbox-relay`: every command, its arguments and options, and the parser
 * (node's util.parseArgs, strict). Parsing does no I/O, so tests and the runbook check can
 * validate a command line without running it.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { usageError } from './cli-error.js';

type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

export interface CommandSpec {
  /** As typed: `inspect`, `dlq list`. */
  readonly name: string;
  /** Required positional arguments, in order. */
  readonly args: readonly string[];
  /** Optional positional arguments after the required ones. */
  readonly optionalArgs?: readonly string[];
  readonly options: OptionSpecs;
  readonly summary: string;
  /** Extra help lines. */
  readonly details: readonly string[];
}

const GLOBAL_OPTIONS: OptionSpecs = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'serve',
    args: [],
    options: {},
    summary: 'run a relay node (as `npm start`), configured from the environment',
    details: ['Stops on SIGTERM/SIGINT after draining (see DRAIN_TIMEOUT_MS).'],
  },
  {
    name: 'publish',
    args: ['user', 'data'],
    options: { 'message-id': { type: 'string' }, 'content-type': { type: 'string' } },
    summary: "publish one message to a user's inbox and wait for RabbitMQ's confirm",
    details: [
      '<data> is JSON text, or @path to read the body from a file.',
      '--message-id <id>     the idempotency key (default: a random UUID)',
      '--content-type <type> default application/json; other types are sent as raw bytes',
      "The user's inbox queue is declared first, so the message never takes the unrouted path.",
    ],
  },
  {
    name: 'inspect',
    args: ['user'],
    options: {},
    summary: "show a user's queue (depth, consumers, unacked) and relay state (epoch, seq, acked, history)",
    details: [
      'Read-only: never declares a queue nor starts a numbering.',
      'Unacked counts come from the management API (RABBITMQ_MANAGEMENT_URL; empty disables it).',
    ],
  },
  {
    name: 'dlq list',
    args: [],
    options: {
      limit: { type: 'string' },
      bodies: { type: 'boolean' },
      queue: { type: 'string' },
      user: { type: 'string' },
      reason: { type: 'string' },
    },
    summary: 'list dead letters without removing or reordering them',
    details: [
      '--limit <n>    at most n messages (default 20, at most 10000)',
      '--bodies       include message bodies (they may hold personal data)',
      '--queue <name> another dead-letter queue than inbox.dead',
      "--user <id>    only this user's dead letters",
      "--reason <r>   only those with this reason, the relay's (relay-reason: client-nack, nack-limit,",
      '               invalid-message, too-large, receipt-without-message-id, invalid-user-id,',
      "               unroutable-inbox-full) or RabbitMQ's",
      '               (rabbitmq-reason: delivery_limit, expired, maxlen, rejected)',
      'Control characters in ids, headers and bodies are shown escaped (\\x1b), never sent to the terminal.',
      'Takes every message in the queue and gives them all back, in order (quorum queues keep the',
      'order only that way): on a large queue it takes a while. Run one dlq command at a time.',
    ],
  },
  {
    name: 'dlq replay',
    args: [],
    options: { limit: { type: 'string' }, user: { type: 'string' }, queue: { type: 'string' } },
    summary: "republish dead letters to their user's inbox, in order, then remove them",
    details: [
      '--limit <n>    replay at most n messages (default: all)',
      "--user <id>    only this user's messages; the others stay in place, in order",
      '--queue <name> another dead-letter queue than inbox.dead',
      'Each copy keeps its messageId and properties, gets x-inbox-relay-replay = previous + 1 and a seal',
      'made with REPLAY_KEY (required: the relays give a copy a new seq only with a valid seal), and is',
      'removed from the queue only after RabbitMQ confirmed the copy.',
    ],
  },
  {
    name: 'dlq purge',
    args: [],
    options: { yes: { type: 'boolean' }, queue: { type: 'string' } },
    summary: 'delete every ready message in the dead-letter queue',
    details: ['--yes          required: purged messages are gone for good', '--queue <name> another dead-letter queue than inbox.dead'],
  },
  {
    name: 'topics follow',
    args: ['user', 'pattern'],
    options: {},
    summary: "the user follows a topic pattern: binds the user's inbox to exchange inbox.topics",
    details: [
      'A pattern is words of [A-Za-z0-9_-] separated by dots, where a word may also be * (one word)',
      'or # (zero or more words): news.sports.*, team.42.#. A bad pattern is refused, nothing is bound.',
      "The user's inbox is declared first with the configured settings. Idempotent.",
    ],
  },
  {
    name: 'topics unfollow',
    args: ['user', 'pattern'],
    options: {},
    summary: 'the user stops following a topic pattern (removes the binding; idempotent)',
    details: [],
  },
  {
    name: 'topics list',
    args: ['user'],
    options: {},
    summary: 'list the topic patterns a user follows',
    details: ['Reads the bindings from the management API (RABBITMQ_MANAGEMENT_URL; AMQP cannot list them).'],
  },
  {
    name: 'presence',
    args: ['user'],
    options: {},
    summary: "show a user's presence: online or not, each connection's node, since when and device, lastSeen once offline",
    details: ['Read-only, from the Redis the relays use (REDIS_URL or REDIS_SENTINELS, REDIS_KEY_PREFIX).'],
  },
  {
    name: 'provision',
    args: ['user'],
    options: {},
    summary: "declare the shared topology and a user's inbox queue with the configured settings",
    details: ['Idempotent. A queue that exists with other arguments is kept as it is and reported.'],
  },
  {
    name: 'drain',
    args: [],
    options: { 'admin-url': { type: 'string' }, wait: { type: 'boolean' }, 'timeout-ms': { type: 'string' } },
    summary: 'ask a running relay to drain (POST /drain on its admin port); it exits when done',
    details: [
      '--admin-url <url>  default http://127.0.0.1:$ADMIN_PORT ($ADMIN_HOST instead when it is one address)',
      'Sends Authorization: Bearer $ADMIN_TOKEN when ADMIN_TOKEN is set (the relay requires it then).',
      '--wait             wait until the node stopped answering (drain finished)',
      '--timeout-ms <ms>  how long --wait waits (default DRAIN_TIMEOUT_MS + 5000)',
    ],
  },
  {
    name: 'token',
    args: ['user'],
    options: { ttl: { type: 'string' }, kid: { type: 'string' } },
    summary: 'print a development token for a user, signed with JWT_SECRET (or an HS* key of JWT_KEYS_FILE)',
    details: [
      '--ttl <seconds>  lifetime (default 3600)',
      '--kid <kid>      sign with the HS* key of JWT_KEYS_FILE that has this kid, named in the header',
      'Not for production key management: sign with your issuer there.',
    ],
  },
  {
    name: 'help',
    args: [],
    optionalArgs: ['command'],
    options: {},
    summary: 'show help for all commands or one',
    details: [],
  },
];

const BY_NAME = new Map(COMMANDS.map((spec) => [spec.name, spec]));

/** Commands typed as two words (`dlq list`), and their actions as a usage error lists them. */
const GROUPS: Readonly<Record<string, string>> = {
  dlq: 'list, replay or purge',
  topics: 'follow, unfollow or list',
};

/** The commands of a group (`dlq` -> dlq list, dlq replay, dlq purge), or undefined when `name` is not one. */
export function groupCommands(name: string): string[] | undefined {
  return GROUPS[name] === undefined ? undefined : COMMANDS.filter((spec) => spec.name.startsWith(`${name} `)).map((spec) => spec.name);
}

export interface Invocation {
  readonly spec: CommandSpec;
  readonly positionals: readonly string[];
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  readonly json: boolean;
  readonly help: boolean;
}

function globalFlags(args: string[]): { json: boolean; help: boolean; rest: string[] } {
  let json = false;
  let help = false;
  let index = 0;
  for (; index < args.length; index += 1) {
    const arg = args[index];
    if (arg === '--json') json = true;
    else if (arg === '--help' || arg === '-h') help = true;
    else break;
  }
  return { json, help, rest: args.slice(index) };
}

/** Parses a command line (without `node` and the script). Throws a usage error (exit 2). */
export function parseInvocation(argv: readonly string[]): Invocation {
  const leading = globalFlags([...argv]);
  let rest = leading.rest;
  const helpSpec = BY_NAME.get('help')!;
  if (rest.length === 0) return { spec: helpSpec, positionals: [], values: {}, json: leading.json, help: false };
  let name = rest[0]!;
  rest = rest.slice(1);
  const group = GROUPS[name];
  if (group !== undefined) {
    const action = rest[0];
    if (action === undefined || action.startsWith('-')) {
      if (leading.help || action === '--help' || action === '-h')
        return { spec: helpSpec, positionals: [name], values: {}, json: leading.json, help: false };
      throw usageError(`${name} needs an action: ${group}`);
    }
    name = `${name} ${action}`;
    rest = rest.slice(1);
  }
  const spec = BY_NAME.get(name);
  if (!spec) throw usageError(`unknown command "${name}" (try: inbox-relay help)`);
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: { ...GLOBAL_OPTIONS, ...spec.options }, allowPositionals: true, strict: true });
  } catch (error) {
    throw usageError(`${name}: ${(error as Error).message}`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const help = leading.help || values.help === true;
  const json = leading.json || values.json === true;
  const { positionals } = parsed;
  if (!help) {
    const max = spec.args.length + (spec.optionalArgs?.length ?? 0);
    if (positionals.length < spec.args.length) {
      throw usageError(
        `${name}: missing ${spec.args
          .slice(positionals.length)
          .map((arg) => `<${arg}>`)
          .join(' ')} (usage: ${usageLine(spec)})`,
      );
    }
    if (positionals.length > max) throw usageError(`${name}: unexpected argument "${positionals[max]}" (usage: ${usageLine(spec)})`);
  }
  return { spec, positionals, values, json, help };
}

export function usageLine(spec: CommandSpec): string {
  const args = [...spec.args.map((arg) => `<${arg}>`), ...(spec.optionalArgs ?? []).map((arg) => `[${arg}]`)];
  const options = Object.entries(spec.options).map(([option, config]) =>
    config.type === 'boolean' ? `[--${option}]` : `[--${option} <value>]`,
  );
  return ['inbox-relay', spec.name, ...args, ...options, '[--json]'].join(' ');
}

export function commandHelp(spec: CommandSpec): string[] {
  return [`usage: ${usageLine(spec)}`, '', `  ${spec.summary}`, ...spec.details.map((line) => `  ${line}`)];
}

export function overallHelp(): string[] {
  const width = Math.max(...COMMANDS.map((spec) => spec.name.length));
  return [
    'usage: inbox-relay <command> [options] [--json]',
    '',
    'Commands:',
    ...COMMANDS.map((spec) => `  ${spec.name.padEnd(width)}  ${spec.summary}`),
    '',
    'Configuration comes from the same environment variables as the relay (RABBITMQ_URL, REDIS_URL,',
    'REDIS_KEY_PREFIX, QUEUE_TYPE, ...); only serve and token need JWT_SECRET.',
    'Exit codes: 0 ok, 1 the operation failed, 2 wrong usage or configuration.',
  ];
}

export function findCommand(name: string): CommandSpec | undefined {
  return BY_NAME.get(name);
}

/** A whole-number option within [min, max], or the fallback when absent. */
export function intOption(invocation: Invocation, option: string, fallback: number, min: number, max: number): number {
  const raw = invocation.values[option];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw usageError(`${invocation.spec.name}: --${option} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

export function stringOption(invocation: Invocation, option: string): string | undefined {
  const raw = invocation.values[option];
  return typeof raw === 'string' ? raw : undefined;
}

export function flag(invocation: Invocation, option: string): boolean {
  return invocation.values[option] === true;
}
