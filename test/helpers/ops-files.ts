/** Reading the project's deployment files in tests: YAML (all documents), JSON, and config.ts's variables. */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export const ROOT = process.cwd();

export function text(path: string): string {
  return readFileSync(join(ROOT, path), 'utf8');
}

export function exists(path: string): boolean {
  return existsSync(join(ROOT, path));
}

export function json<T = unknown>(path: string): T {
  return JSON.parse(text(path)) as T;
}

/**
 * Every document of a YAML file; throws on a syntax error, naming the file. Merge keys (`<<: *anchor`)
 * are resolved, as docker compose resolves them.
 */
export function yamlDocuments<T = Record<string, unknown>>(path: string): T[] {
  const docs = parseAllDocuments(text(path), { merge: true });
  const list = Array.isArray(docs) ? docs : [docs];
  return list.map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors.map((e) => e.message).join('; ')}`);
    return doc.toJS() as T;
  });
}

export function yamlFile<T = Record<string, unknown>>(path: string): T {
  const [first] = yamlDocuments<T>(path);
  if (first === undefined) throw new Error(`${path} is empty`);
  return first;
}

export function filesIn(dir: string, suffix: string): string[] {
  return readdirSync(join(ROOT, dir))
    .filter((name) => name.endsWith(suffix))
    .map((name) => `${dir}/${name}`);
}

/** The environment variables the relay's configuration reads. */
export function configVariables(): Set<string> {
  // src/connection-config.ts reads the settings that name several servers (set(env, 'VAR')),
  // src/jwt-config.ts the token settings.
  const source = text('src/config.ts') + text('src/connection-config.ts') + text('src/jwt-config.ts');
  const names = new Set<string>();
  for (const match of source.matchAll(/(?:read|set)\(env, '([A-Z0-9_]+)'|env\.([A-Z0-9_]+)/g)) names.add((match[1] ?? match[2])!);
  return names;
}

/**
 * Replaces compose-style `${VAR:?message}` / `${VAR:-default}` / `${VAR}` references with values;
 * a `${VAR:-default}` with no value given takes its default, as compose does.
 */
export function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{([A-Z0-9_]+)(?::([?-])([^}]*))?\}/g, (_match, name: string, kind?: string, rest?: string) => {
    const found = vars[name] ?? (kind === '-' ? rest : undefined);
    if (found === undefined) throw new Error(`no test value for \${${name}}`);
    return found;
  });
}

/** Compose volume mounts (`source:target[:mode]`) as target -> source. */
export function mountsOf(volumes: string[]): Map<string, string> {
  return new Map(
    volumes.map((volume) => {
      const [source = '', target = ''] = volume.split(':');
      return [target, source];
    }),
  );
}

/** The `key = value` lines of a rabbitmq.conf-style file, comments (`#`) and blank lines skipped. */
export function rabbitmqConf(path: string): Map<string, string> {
  const entries = new Map<string, string>();
  for (const line of text(path).split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const match = /^([a-z0-9_.]+)\s*=\s*(.+)$/.exec(trimmed);
    if (!match) throw new Error(`${path}: cannot read line "${trimmed}"`);
    entries.set(match[1]!, match[2]!.trim());
  }
  return entries;
}

/** One section of an HAProxy configuration: `backend relays` is { kind: 'backend', name: 'relays' }; each line split into words. */
export interface HaproxySection {
  kind: string;
  name: string;
  lines: string[][];
}

/** The sections of an HAProxy configuration file, comments and blank lines dropped. */
export function haproxySections(path: string): HaproxySection[] {
  const sections: HaproxySection[] = [];
  for (const raw of text(path).split('\n')) {
    const line = raw.replace(/#.*$/, '').trimEnd();
    if (line.trim() === '') continue;
    const words = line.trim().split(/\s+/);
    if (!/^\s/.test(line)) {
      sections.push({ kind: words[0]!, name: words[1] ?? '', lines: [] });
      continue;
    }
    const current = sections.at(-1);
    if (!current) throw new Error(`${path}: "${line.trim()}" is outside any section`);
    current.lines.push(words);
  }
  return sections;
}
