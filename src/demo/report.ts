/**
 * The summary: per user and in total, what was sent and delivered, what the SDK suppressed,
 * what was lost and how often clients reconnected; and the verdict the exit code follows.
 */
import type { ClientStats } from '../client/index.js';
import type { UserLedger } from './ledger.js';

/** One user's line of the summary. */
export interface UserSummary {
  readonly name: string;
  readonly sent: number;
  /** Distinct messages a handler processed. */
  readonly delivered: number;
  /** Frames the SDK suppressed because their seq was already processed. */
  readonly duplicates: number;
  readonly lost: number;
  /** Welcomes after the first (the SDK's reconnects and the replaced client's resume). */
  readonly reconnects: number;
  readonly ordered: boolean;
}

/** The run's outcome. */
export interface Summary {
  /** Names the run's queues (`inbox.demo-<runId>.<name>`) and Redis keys (`demo-<runId>:`). */
  readonly runId: string;
  readonly users: readonly UserSummary[];
  readonly total: Omit<UserSummary, 'name'>;
  /** From the start of the run to the end of the scenario (cleanup excluded). */
  readonly elapsedMs: number;
  /** Every sent message processed, in order. */
  readonly passed: boolean;
  /** Details worth a line under the table (order violations, unconfirmed publishes, repeats). */
  readonly notes: readonly string[];
}

/** Computes the summary from the ledgers and each user's client counters. */
export function summarize(runId: string, ledgers: readonly UserLedger[], stats: readonly ClientStats[], elapsedMs: number): Summary {
  const users = ledgers.map((ledger, i): UserSummary => ({
    name: ledger.name,
    sent: ledger.sent.length,
    delivered: ledger.delivered.size,
    duplicates: stats[i]?.duplicates ?? 0,
    lost: ledger.lost,
    reconnects: Math.max(0, (stats[i]?.connections ?? 0) - 1),
    ordered: ledger.disorder.length === 0,
  }));
  const add = (key: 'sent' | 'delivered' | 'duplicates' | 'lost' | 'reconnects'): number => users.reduce((sum, user) => sum + user[key], 0);
  const total = {
    sent: add('sent'),
    delivered: add('delivered'),
    duplicates: add('duplicates'),
    lost: add('lost'),
    reconnects: add('reconnects'),
    ordered: users.every((user) => user.ordered),
  };
  const notes: string[] = [];
  for (const ledger of ledgers) {
    if (ledger.disorder.length > 0) notes.push(`${ledger.name}: out of order: ${ledger.disorder.slice(0, 3).join('; ')}`);
    if (ledger.failedPublishes > 0)
      notes.push(`${ledger.name}: ${ledger.failedPublishes} publish(es) not confirmed by RabbitMQ (not counted as sent)`);
    if (ledger.repeats > 0) notes.push(`${ledger.name}: ${ledger.repeats} message(s) reached the handler again (at-least-once)`);
  }
  return { runId, users, total, elapsedMs, passed: total.lost === 0 && total.ordered, notes };
}

const COLUMNS = ['user', 'sent', 'delivered', 'duplicates', 'lost', 'reconnects', 'order'] as const;

function row(name: string, line: Omit<UserSummary, 'name'>): string[] {
  return [
    name,
    String(line.sent),
    String(line.delivered),
    String(line.duplicates),
    String(line.lost),
    String(line.reconnects),
    line.ordered ? 'ok' : 'BROKEN',
  ];
}

/** The summary as a plain-text table with a verdict line. */
export function renderSummary(summary: Summary): string {
  const rows = [[...COLUMNS], ...summary.users.map((user) => row(user.name, user)), row('total', summary.total)];
  const widths = COLUMNS.map((_, c) => Math.max(...rows.map((cells) => cells[c]!.length)));
  const format = (cells: string[]): string =>
    cells
      .map((cell, c) => (c === 0 || c === cells.length - 1 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
      .join('  ')
      .trimEnd();
  const verdict = summary.passed
    ? 'PASS: every confirmed message was processed, in order'
    : `FAIL: ${summary.total.lost} lost${summary.total.ordered ? '' : ', order broken'}`;
  return [
    '',
    `Summary of run ${summary.runId}`,
    ...rows.map(format),
    `time ${(summary.elapsedMs / 1000).toFixed(1)} s (start to last delivery)`,
    ...summary.notes,
    'delivered = distinct messages processed; duplicates = redeliveries the SDK suppressed',
    verdict,
  ].join('\n');
}
