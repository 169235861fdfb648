/**
 * `inbox-relay`: the operator CLI. `runCli` parses a command line, runs the command and returns
 * its exit code (0 ok, 1 the operation failed, 2 wrong usage or configuration); it never calls
 * process.exit, so tests run it in-process. Outputs never contain tokens (but `token`'s own) nor
 * message bodies (but `dlq list --bodies`).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Env } from '../config.js';
import { errorMessage } from '../errors.js';
import { CliError, ExitCode } from './cli-error.js';
import { commandHelp, findCommand, groupCommands, overallHelp, parseInvocation, type Invocation } from './commands.js';
import { dlqList, dlqPurge, dlqReplay } from './commands/dlq.js';
import { drain } from './commands/drain.js';
import { inspect } from './commands/inspect.js';
import { presence } from './commands/presence.js';
import { provision } from './commands/provision.js';
import { publish } from './commands/publish.js';
import { serve } from './commands/serve.js';
import { token } from './commands/token.js';
import { topicsFollow, topicsList, topicsUnfollow } from './commands/topics.js';
import { createOutput, jsonSafe, terminalSafe, type CliIo, type Output } from './io.js';

type Handler = (invocation: Invocation, env: Env, output: Output) => Promise<number | 'running'>;

const HANDLERS: Record<string, Handler> = {
  serve: () => serve(),
  publish,
  inspect,
  'dlq list': dlqList,
  'dlq replay': dlqReplay,
  'dlq purge': dlqPurge,
  'topics follow': topicsFollow,
  'topics unfollow': topicsUnfollow,
  'topics list': topicsList,
  presence,
  provision,
  drain,
  token,
  help: async (invocation, _env, output) => {
    const topic = invocation.positionals[0];
    if (topic === undefined) {
      output.result({ commands: overallHelp() }, () => overallHelp());
      return 0;
    }
    const specs = groupCommands(topic) ?? [topic];
    const lines = specs.flatMap((name) => {
      const spec = findCommand(name);
      if (!spec) throw new CliError(ExitCode.usage, `unknown command "${topic}"`);
      return [...commandHelp(spec), ''];
    });
    output.result({ help: lines }, () => lines);
    return 0;
  },
};

/** The package version, from the package.json above this file (src/ and dist/src/ alike). */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i += 1) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'inbox-relay' && pkg.version) return pkg.version;
    } catch {
      // Not here: one level up.
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

/** Runs one command line; resolves to the exit code, or 'running' when `serve` took over the process. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number | 'running'> {
  const json = argv.includes('--json');
  const fail = (error: unknown): number => {
    const code = error instanceof CliError ? error.exitCode : ExitCode.failed;
    const message = errorMessage(error);
    io.stderr(
      json ? `${jsonSafe(JSON.stringify({ ok: false, exitCode: code, error: message }))}\n` : `inbox-relay: ${terminalSafe(message)}\n`,
    );
    return code;
  };
  if (argv.length === 1 && argv[0] === '--version') {
    io.stdout(`${packageVersion()}\n`);
    return ExitCode.ok;
  }
  if (argv.every((arg) => arg === '--json')) {
    io.stderr(`${overallHelp().join('\n')}\n`);
    return ExitCode.usage;
  }
  let invocation: Invocation;
  try {
    invocation = parseInvocation(argv);
  } catch (error) {
    return fail(error);
  }
  const output = createOutput(io, invocation.json);
  if (invocation.help) {
    const lines = commandHelp(invocation.spec);
    output.result({ help: lines }, () => lines);
    return ExitCode.ok;
  }
  const handler = HANDLERS[invocation.spec.name];
  if (!handler) return fail(new CliError(ExitCode.usage, `no handler for ${invocation.spec.name}`));
  try {
    return await handler(invocation, io.env, output);
  } catch (error) {
    return fail(error);
  }
}
