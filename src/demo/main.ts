/**
 * `npm run demo`: a first run of inbox-relay in one terminal. Starts a relay process, a
 * producer and one SDK client per user against the RabbitMQ and Redis on this machine, cuts a
 * client's connection, replaces a client, restarts the relay twice (SIGTERM, then SIGKILL),
 * and shows that every confirmed message was processed, in order.
 *
 * Exit codes: 0 nothing lost and order held; 1 something lost, out of order, or the demo
 * failed; 2 bad flags, or RabbitMQ or Redis unreachable; 130 interrupted (Ctrl-C).
 */
import { DEFAULTS } from '../config.js';
import { errorMessage } from '../errors.js';
import { USAGE, UsageError, parseDemoArgs, type DemoArgs } from './args.js';
import { runDemo } from './demo-run.js';
import { Narrator } from './narrator.js';
import { renderSummary } from './report.js';
import { ServiceUnavailableError, Services } from './services.js';

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** The scenario stops waiting after this; cleanup follows. */
const SCENARIO_BUDGET_MS = 40_000;
/** Past this the demo gives up outright (its relay process is killed on exit). */
const HARD_LIMIT_MS = 60_000;

async function main(argv: readonly string[]): Promise<number> {
  let args: DemoArgs;
  try {
    args = parseDemoArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`demo: ${error.message}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const started = Date.now();
  const narrator = new Narrator(args.quiet);
  const rabbitmqUrl = process.env.RABBITMQ_URL || DEFAULTS.rabbitmqUrl;
  const redisUrl = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  let services: Services;
  try {
    services = await Services.open(rabbitmqUrl, redisUrl);
  } catch (error) {
    if (!(error instanceof ServiceUnavailableError)) throw error;
    process.stderr.write(`demo: ${error.message}\n  The demo needs RabbitMQ and Redis: ${error.hint}.\n`);
    return 2;
  }
  const interrupted = new AbortController();
  process.once('SIGINT', () => {
    narrator.warn('demo', 'interrupted: cleaning up (Ctrl-C again to quit at once)');
    interrupted.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  try {
    const summary = await runDemo({
      args,
      rabbitmqUrl,
      redisUrl,
      services,
      narrator,
      signal: interrupted.signal,
      deadline: started + SCENARIO_BUDGET_MS,
    });
    narrator.print(renderSummary(summary));
    return summary.passed ? 0 : 1;
  } catch (error) {
    if (interrupted.signal.aborted) return 130;
    narrator.warn('demo', `failed: ${errorMessage(error)}`);
    return 1;
  } finally {
    await services.close();
  }
}

setTimeout(() => {
  process.stderr.write(`demo: not finished after ${HARD_LIMIT_MS / 1000} s; giving up\n`);
  process.exit(1);
}, HARD_LIMIT_MS).unref();

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`demo: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
