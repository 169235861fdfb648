/**
 * Extracts the commands written in runbooks/*.md. Convention (runbooks/README.md): fenced blocks
 * marked `sh` hold inbox-relay CLI commands, which the tests run; blocks marked `sh external` hold
 * commands of other tools, which the tests check exist. Inline code that starts with
 * `inbox-relay ` is a CLI command too, checked by the CLI's parser.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface RunbookCommand {
  file: string;
  line: number;
  kind: 'exercised' | 'external' | 'inline';
  /** The command as written (continuations joined). */
  source: string;
  /** Leading VAR=value assignments. */
  env: Record<string, string>;
  program: string;
  args: string[];
}

/** Splits a command line like a POSIX shell would for simple commands; rejects pipes, lists and substitutions. */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  for (let i = 0; i < line.length; i += 1) {
    const char = line[i]!;
    if (char === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated ' in: ${line}`);
      current += line.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (char === '"') {
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j += 1) {
        if (line[j] === '\\' && j + 1 < line.length) j += 1;
        if (line[j] === '`' || (line[j] === '$' && line[j + 1] === '(')) throw new Error(`command substitution in: ${line}`);
        current += line[j];
      }
      if (j >= line.length) throw new Error(`unterminated " in: ${line}`);
      inWord = true;
      i = j;
    } else if (char === '\\' && i + 1 < line.length) {
      current += line[i + 1];
      inWord = true;
      i += 1;
    } else if (/\s/.test(char)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else if (char === '<' && /^<[a-z-]+>/.test(line.slice(i))) {
      // A placeholder such as <user>, not a redirection.
      const end = line.indexOf('>', i);
      current += line.slice(i, end + 1);
      inWord = true;
      i = end;
    } else if ('|;&<>`'.includes(char) || (char === '$' && line[i + 1] === '(')) {
      throw new Error(`runbook commands are single simple commands (found "${char}"): ${line}`);
    } else {
      current += char;
      inWord = true;
    }
  }
  if (inWord) words.push(current);
  return words;
}

function toCommand(file: string, line: number, kind: RunbookCommand['kind'], source: string): RunbookCommand {
  const words = shellWords(source);
  const env: Record<string, string> = {};
  while (words.length > 0 && /^[A-Z_][A-Z0-9_]*=/.test(words[0]!)) {
    const assignment = words.shift()!;
    const at = assignment.indexOf('=');
    env[assignment.slice(0, at)] = assignment.slice(at + 1);
  }
  const [program = '', ...args] = words;
  return { file, line, kind, source, env, program, args };
}

/** Every command of one runbook. Throws on a fenced block that is neither `sh` nor `sh external`. */
export function commandsOf(file: string, markdown: string): RunbookCommand[] {
  const commands: RunbookCommand[] = [];
  const lines = markdown.split('\n');
  let block: { kind: 'exercised' | 'external'; start: number } | undefined;
  let pending = '';
  let pendingLine = 0;
  for (const [index, raw] of lines.entries()) {
    const lineNumber = index + 1;
    const fence = /^\s*```(.*)$/.exec(raw);
    if (fence) {
      if (block) {
        if (pending) throw new Error(`${file}:${pendingLine}: continuation line at the end of a block`);
        block = undefined;
        continue;
      }
      const info = fence[1]!.trim();
      if (info === 'sh') block = { kind: 'exercised', start: lineNumber };
      else if (info === 'sh external') block = { kind: 'external', start: lineNumber };
      else throw new Error(`${file}:${lineNumber}: code blocks in runbooks are "sh" or "sh external", not "${info}"`);
      continue;
    }
    if (block) {
      const trimmed = raw.trim();
      if (!pending && (trimmed === '' || trimmed.startsWith('#'))) continue;
      if (!pending) pendingLine = lineNumber;
      if (trimmed.endsWith('\\')) {
        pending += `${trimmed.slice(0, -1)} `;
        continue;
      }
      commands.push(toCommand(file, pendingLine, block.kind, pending + trimmed));
      pending = '';
      continue;
    }
    for (const match of raw.matchAll(/`(inbox-relay [^`]+)`/g)) commands.push(toCommand(file, lineNumber, 'inline', match[1]!));
  }
  if (block) throw new Error(`${file}:${block.start}: unterminated code block`);
  return commands;
}

export function runbookCommands(dir = join(process.cwd(), 'runbooks')): RunbookCommand[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.md'))
    .sort()
    .flatMap((name) => commandsOf(`runbooks/${name}`, readFileSync(join(dir, name), 'utf8')));
}

/** Replaces `<name>` placeholders; throws when one is left without a value. */
export function substitute(words: string[], values: Record<string, string>): string[] {
  return words.map((word) =>
    word.replace(/<([a-z-]+)>/g, (match, name: string) => {
      const value = values[name];
      if (value === undefined) throw new Error(`no value for placeholder ${match}`);
      return value;
    }),
  );
}
