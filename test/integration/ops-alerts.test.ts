/**
 * The alert rules and the Grafana dashboard read only metrics that a running relay exposes, or
 * (names starting with `rabbitmq_`) that RabbitMQ's prometheus plugin serves at the endpoints
 * ops/prometheus/prometheus.yml scrapes, and every alert links a runbook that exists and has the
 * sections an on-call engineer needs.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics, type RelayMetrics } from '../../src/metrics/metrics.js';
import { exists, filesIn, json, text, yamlFile } from '../helpers/ops-files.js';
import { exposedSeries, metricNames } from '../helpers/ops-prometheus.js';
import { rabbitmqUrl, startTestRelay, testConfig, type TestRelay } from '../helpers/relay.js';

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const execFileAsync = promisify(execFile);

/** Series Prometheus makes up itself rather than scraping. */
const SYNTHETIC = new Set(['up']);
const RUNBOOK_SECTIONS = ['Meaning', 'Impact', 'Diagnosis', 'Mitigation', 'Escalation'];

const rules = (yamlFile<{ groups: { name: string; rules: Rule[] }[] }>('ops/prometheus/alerts.yml').groups ?? []).flatMap(
  (group) => group.rules,
);

interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}
const dashboard = json<{ uid: string; panels: Panel[]; templating: { list: { type?: string; query: { query: string } | string }[] } }>(
  'ops/grafana/dashboards/inbox-relay.json',
);
const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);

interface ScrapeJob {
  job_name: string;
  metrics_path?: string;
  params?: Record<string, string[]>;
  static_configs?: { targets: string[] }[];
}
/** The scrape jobs of RabbitMQ's prometheus plugin (port 15692), as paths with their query. */
const rabbitmqScrapes = (yamlFile<{ scrape_configs: ScrapeJob[] }>('ops/prometheus/prometheus.yml').scrape_configs ?? [])
  .filter((job) => (job.static_configs ?? []).some((config) => config.targets.some((target) => target.endsWith(':15692'))))
  .map((job) => {
    const query = new URLSearchParams();
    for (const [name, values] of Object.entries(job.params ?? {})) for (const value of values) query.append(name, value);
    return `${job.metrics_path ?? '/metrics'}${query.size > 0 ? `?${query.toString()}` : ''}`;
  });

/** What the broker's plugin serves at those paths (the test broker's plugin, on its host). */
async function brokerSeries(): Promise<Set<string> | undefined> {
  const host = new URL(rabbitmqUrl()).hostname;
  const names = new Set<string>();
  for (const path of rabbitmqScrapes) {
    const response = await fetch(`http://${host}:15692${path}`).catch(() => undefined);
    if (!response?.ok) return undefined;
    for (const name of exposedSeries(await response.text())) names.add(name);
  }
  return names;
}

/** Runs promtool; undefined when it is not installed, else its output (throws when it fails). */
function promtool(args: string[]): string | undefined {
  try {
    return execFileSync('promtool', args, { cwd: 'ops/prometheus', encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  } catch (error) {
    const failed = error as { code?: string; stdout?: string; stderr?: string };
    if (failed.code === 'ENOENT') return undefined;
    throw new Error(`promtool ${args.join(' ')} failed:\n${failed.stdout ?? ''}${failed.stderr ?? ''}`, { cause: error });
  }
}

describe('alert rules and dashboard', () => {
  let relay: TestRelay;
  let exposed: Set<string>;
  /** Undefined when the broker's prometheus plugin does not answer (then rabbitmq_* names are not checked). */
  let broker: Set<string> | undefined;
  let metrics: RelayMetrics | undefined;
  /** Whether a running relay, or the broker's plugin as scraped, exposes the series `name`. */
  const isExposed = (name: string): boolean =>
    SYNTHETIC.has(name) || exposed.has(name) || (/^(rabbitmq|erlang_vm)_/.test(name) && (broker === undefined || broker.has(name)));
  beforeAll(async () => {
    broker = await brokerSeries();
    relay = await startTestRelay(testConfig());
    // Once the relay serves /metrics, read it from there; until then, bind the metrics to its events.
    const served = await fetch(`http://127.0.0.1:${relay.relay.adminPort}/metrics`).catch(() => undefined);
    let body: string;
    if (served?.ok) {
      body = await served.text();
    } else {
      const { relay: running } = relay;
      metrics = createMetrics(running.events, {
        connections: () => running.connectionCount,
        streams: () => running.registry.size,
        inflight: () => [...running.registry.values()].reduce((sum, stream) => sum + stream.inflightCount, 0),
      });
      body = await metrics.render();
    }
    exposed = exposedSeries(body);
  });
  afterAll(async () => {
    metrics?.close();
    await relay.stop();
  });

  it('has alert rules, each with an expression, a severity and a summary', () => {
    expect(rules.length).toBeGreaterThanOrEqual(10);
    const names = rules.map((rule) => rule.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const rule of rules) {
      expect(rule.alert, JSON.stringify(rule)).toMatch(/^InboxRelay[A-Za-z]+$/);
      expect(rule.expr.trim().length, rule.alert).toBeGreaterThan(0);
      expect(['page', 'ticket'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
    }
  });

  it('uses in alert expressions only metrics a running relay exposes', () => {
    for (const rule of rules) {
      const used = metricNames(rule.expr);
      expect(used.size, rule.alert).toBeGreaterThan(0);
      for (const name of used) expect(isExposed(name), `${rule.alert} uses ${name}`).toBe(true);
    }
  });

  it("scrapes RabbitMQ's per-queue depth of inbox.dead that an alert reads", (context) => {
    expect(rabbitmqScrapes).toContain('/metrics/detailed?family=queue_coarse_metrics');
    if (broker === undefined) return context.skip("RabbitMQ's prometheus plugin does not answer on port 15692");
    expect(broker.has('rabbitmq_detailed_queue_messages')).toBe(true);
  });

  it('uses in dashboard panels and variables only metrics a running relay exposes', () => {
    const expressions = panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ where: panel.title, expr: target.expr })));
    expect(expressions.length).toBeGreaterThanOrEqual(20);
    // A datasource variable's query is a datasource type, not a metric.
    for (const variable of dashboard.templating.list.filter((entry) => entry.type !== 'datasource')) {
      const query = typeof variable.query === 'string' ? variable.query : variable.query.query;
      const match = /^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,/.exec(query);
      expect(match, query).not.toBeNull();
      expressions.push({ where: `variable ${query}`, expr: match![1]! });
    }
    for (const { where, expr } of expressions) {
      const used = metricNames(expr);
      expect(used.size, where).toBeGreaterThan(0);
      for (const name of used) expect(isExposed(name), `${where} uses ${name}`).toBe(true);
    }
  });

  it('passes promtool check rules and the rule unit tests, where promtool is installed', (context) => {
    const checked = promtool(['check', 'rules', 'alerts.yml']);
    if (checked === undefined) return context.skip('promtool is not installed (apt-get install prometheus)');
    expect(checked).toMatch(new RegExp(`SUCCESS: ${rules.length} rules found`));
    expect(promtool(['test', 'rules', 'alerts.test.yml'])).toMatch(/SUCCESS/);
  });

  it('has a dashboard with unique panel ids, each panel placed on the grid', () => {
    expect(dashboard.uid).toBe('inbox-relay');
    const ids = panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels) expect((panel as unknown as { gridPos?: unknown }).gridPos, panel.title).toBeDefined();
  });

  it('links every alert to runbooks/<alert>.md, which exists and has every section', () => {
    for (const rule of rules) {
      const url = rule.annotations?.runbook_url ?? '';
      expect(url, rule.alert).toMatch(new RegExp(`/runbooks/${rule.alert}\\.md$`));
      const path = `runbooks/${rule.alert}.md`;
      expect(exists(path), path).toBe(true);
      const page = text(path);
      expect(page, path).toMatch(new RegExp(`^# ${rule.alert}\\b`));
      for (const section of RUNBOOK_SECTIONS) expect(page, `${path}: ## ${section}`).toMatch(new RegExp(`^## ${section}\\b`, 'm'));
    }
  });

  it('indexes every runbook in runbooks/README.md', () => {
    const index = text('runbooks/README.md');
    for (const rule of rules) expect(index, rule.alert).toContain(`(${rule.alert}.md)`);
    const pages = filesIn('runbooks', '.md')
      .map((path) => path.replace('runbooks/', ''))
      .filter((page) => page !== 'README.md');
    for (const page of pages) expect(index, page).toContain(`(${page})`);
  });

  it('has no alert page without its rule', () => {
    const alerts = new Set(rules.map((rule) => rule.alert));
    const pages = filesIn('runbooks', '.md').map((path) => path.replace(/^runbooks\/(.*)\.md$/, '$1'));
    for (const page of pages.filter((name) => name.startsWith('InboxRelay'))) expect(alerts.has(page), page).toBe(true);
  });

  it('fires InboxRelayForeignDeadLetters for dead letters the relay did not make, and not for its own (promtool test rules)', async (context) => {
    const dir = await mkdtemp(join(tmpdir(), 'alert-rules-'));
    try {
      // Samples every minute; at 10m inbox.dead grows and the relay's counters move (or not).
      const depth = (after: number) => `rabbitmq_detailed_queue_messages{queue="inbox.dead",vhost="/"}' \n        values: '0x9 ${after}x30`;
      const cases = [
        { name: 'the relay made all of them', depth: 2, made: 2, fallbacks: 0, fires: false },
        { name: 'RabbitMQ made one more', depth: 3, made: 2, fallbacks: 0, fires: true },
        { name: 'the copy failed and fell back to a plain reject', depth: 1, made: 1, fallbacks: 1, fires: true },
        { name: 'no relay dead letters at all (no series)', depth: 1, made: undefined, fallbacks: undefined, fires: true },
      ];
      // Each case that fires is one message more in inbox.dead than the relay made.
      const rule = rules.find((candidate) => candidate.alert === 'InboxRelayForeignDeadLetters');
      const annotations = JSON.stringify({
        ...rule?.annotations,
        summary: rule?.annotations?.summary?.replace('{{ $value | humanize }}', '1'),
      });
      const tests = cases.map((c) => {
        const series = [`      - series: '${depth(c.depth)}'`];
        if (c.made !== undefined) {
          series.push(
            `      - series: 'inbox_relay_messages_dead_lettered_total{reason="client-nack",instance="relay1:9090"}'\n        values: '0x9 ${c.made}x30'`,
          );
          series.push(
            `      - series: 'inbox_relay_dead_letter_fallbacks_total{reason="client-nack",instance="relay1:9090"}'\n        values: '0x9 ${c.fallbacks}x30'`,
          );
        }
        return [
          `  # ${c.name}`,
          '  - interval: 1m',
          '    input_series:',
          ...series,
          '    alert_rule_test:',
          '      - eval_time: 20m',
          '        alertname: InboxRelayForeignDeadLetters',
          c.fires
            ? `        exp_alerts:\n          - exp_labels:\n              severity: ticket\n            exp_annotations: ${annotations}`
            : '        exp_alerts: []',
        ].join('\n');
      });
      const file = join(dir, 'foreign-dead-letters.test.yml');
      await writeFile(
        file,
        [`rule_files:\n  - ${join(process.cwd(), 'ops/prometheus/alerts.yml')}`, 'evaluation_interval: 1m', 'tests:', ...tests, ''].join(
          '\n',
        ),
      );
      let run: { code: number; output: string };
      try {
        const { stdout, stderr } = await execFileAsync('promtool', ['test', 'rules', file]);
        run = { code: 0, output: stdout + stderr };
      } catch (error) {
        const failed = error as { code?: unknown; stdout?: string; stderr?: string };
        if (failed.code === 'ENOENT') return context.skip('promtool is not installed');
        run = { code: Number(failed.code), output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
      }
      expect(run.code, run.output).toBe(0);
      expect(run.output).toMatch(/SUCCESS/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('shows on the dashboard every metric an alert reads', () => {
    const shown = new Set(panels.flatMap((panel) => (panel.targets ?? []).flatMap((target) => [...metricNames(target.expr)])));
    for (const rule of rules) for (const name of metricNames(rule.expr)) expect(shown.has(name), `${rule.alert}: ${name}`).toBe(true);
  });
});
