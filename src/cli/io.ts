/** Where the CLI reads its environment and writes its output; tests pass their own. */
import type { Env } from '../config.js';

export interface CliIo {
  readonly env: Env;
  stdout(text: string): void;
  stderr(text: string): void;
}

export function processIo(): CliIo {
  return {
    env: process.env,
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  };
}

/** Output of one command: `--json` prints `data` as one JSON document, else the text lines. */
export interface Output {
  readonly json: boolean;
  /** Prints a command's result. */
  result(data: unknown, text: () => string[]): void;
  /** A progress or warning line on stderr (never with --json, whose stdout stays one document). */
  note(line: string): void;
}

export function createOutput(io: CliIo, json: boolean): Output {
  return {
    json,
    result(data, text) {
      io.stdout(json ? `${JSON.stringify(data, null, 2)}\n` : `${text().join('\n')}\n`);
    },
    note(line) {
      io.stderr(`${line}\n`);
    },
  };
}

/** A URL with its password replaced, for messages and output. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(invalid URL)';
  }
}

/** An error's message, with the cause's when fetch hides it behind "fetch failed". */
export function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error ? (error.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  if (cause && typeof cause === 'object') {
    const detail = typeof cause.code === 'string' ? cause.code : typeof cause.message === 'string' ? cause.message : undefined;
    if (detail && !message.includes(detail)) return `${message} (${detail})`;
  }
  return message;
}
