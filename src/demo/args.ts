/** Command-line flags of `npm run demo`, parsed with `util.parseArgs`. */
import { parseArgs } from 'node:util';

export const DEFAULT_USERS = 3;
export const DEFAULT_MESSAGES = 30;
export const MAX_USERS = 50;
export const MAX_MESSAGES = 1_000;

export const USAGE = `usage: npm run demo -- [--users N] [--messages N] [--quiet]
  --users N     users, one client each (default ${DEFAULT_USERS}, at most ${MAX_USERS})
  --messages N  messages per user (default ${DEFAULT_MESSAGES}, at most ${MAX_MESSAGES})
  --quiet       print only the summary
Needs RabbitMQ and Redis: RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672),
REDIS_URL (default redis://127.0.0.1:6379).`;

export interface DemoArgs {
  readonly users: number;
  readonly messages: number;
  readonly quiet: boolean;
  readonly help: boolean;
}

/** Thrown for a flag the demo cannot use; the message says which and why. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

function count(flag: string, raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw new UsageError(`--${flag} must be a whole number from 1 to ${max} (got ${raw})`);
  return value;
}

/** Parses the flags; throws {@link UsageError} on anything unknown or out of range. */
export function parseDemoArgs(argv: readonly string[]): DemoArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        users: { type: 'string' },
        messages: { type: 'string' },
        quiet: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  return {
    users: count('users', values.users, DEFAULT_USERS, MAX_USERS),
    messages: count('messages', values.messages, DEFAULT_MESSAGES, MAX_MESSAGES),
    quiet: values.quiet === true,
    help: values.help === true,
  };
}
