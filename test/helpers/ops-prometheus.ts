/**
 * Small readers of the Prometheus text format and of PromQL, for the ops tests: which series a
 * scrape exposes, one sample's value, and which metric names an expression uses.
 */

/** Every series name a scrape exposes, from its `# TYPE` lines (histograms and summaries expand). */
export function exposedSeries(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const match = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (!match) continue;
    const [, name, type] = match as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
  }
  return names;
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const pattern = /(\w+)="((?:[^"\\]|\\.)*)"/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) labels[match[1]!] = match[2]!.replace(/\\(.)/g, '$1');
  return labels;
}

/** The value of the sample `name` whose labels include `labels`, or undefined when there is none. */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = parseLabels(match[2] ?? '');
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) return Number(match[3]);
  }
  return undefined;
}

const PROMQL_WORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression reads: identifiers that are not functions, keywords,
 * label names (in `{...}`, `by (...)` and the like), durations or strings.
 */
export function metricNames(expr: string): Set<string> {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\w+/g, ' ');
  const names = new Set<string>();
  const pattern = /[a-zA-Z_:][a-zA-Z0-9_:]*/g;
  for (let match = pattern.exec(stripped); match; match = pattern.exec(stripped)) {
    const word = match[0];
    const after = stripped.slice(match.index + word.length).trimStart();
    if (after.startsWith('(')) continue;
    if (PROMQL_WORDS.has(word.toLowerCase())) continue;
    const before = stripped.slice(0, match.index);
    if (/\d$/.test(before)) continue; // the unit of a number such as 5m or 1e3
    names.add(word);
  }
  return names;
}
