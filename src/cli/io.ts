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
      io.stdout(json ? `${jsonSafe(JSON.stringify(data, null, 2))}\n` : `${text().map(terminalSafe).join('\n')}\n`);
    },
    note(line) {
      io.stderr(`${terminalSafe(line)}\n`);
    },
  };
}

/**
 * Characters a terminal may act on instead of showing: C0 controls (escape sequences start with
 * ESC, U+001B; a line feed starts a line that looks like the tool's own), DEL, C1 controls (U+009B
 * is a one-character CSI on some terminals), the line and paragraph separators, and the Unicode
 * bidirectional controls, which reorder what is shown.
 */
// eslint-disable-next-line no-control-regex -- the control characters in this class are the point
const UNSAFE_IN_TERMINAL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
// JSON.stringify escapes C0 itself; the rest would reach the terminal raw.
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const hex = (character: string, width: number): string => character.charCodeAt(0).toString(16).padStart(width, '0');

/**
 * One line of human output with every character of UNSAFE_IN_TERMINAL written as an escape
 * (`\x1b`, `\x0a`, `\u{202e}`): message ids, headers and bodies of dead letters come from
 * producers, and must not move the cursor, recolour or rewrite the operator's terminal.
 */
export function terminalSafe(line: string): string {
  return line.replace(UNSAFE_IN_TERMINAL, (character) =>
    character.charCodeAt(0) <= 0xff ? `\\x${hex(character, 2)}` : `\\u{${hex(character, 4)}}`,
  );
}

/** JSON text with the characters JSON.stringify leaves raw written as `\uXXXX` (still the same JSON value). */
export function jsonSafe(text: string): string {
  return text.replace(UNSAFE_IN_JSON, (character) => `\\u${hex(character, 4)}`);
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
