/**
 * The alert rules and the Grafana dashboard read only metrics that a running relay (or, for the
 * infrastructure alerts, a RabbitMQ node) exposes, every alert links a runbook that exists and has
 * the sections an on-call engineer needs, and promtool accepts the rules and passes their unit
 * tests (ops/prometheus/alerts.test.yml) where it is installed.
 */
import { execFileSync } from 'node:child_process';
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

/** Series Prometheus makes up itself rather than scraping. */
const SYNTHETIC = new Set(['up']);
/** RabbitMQ's own metrics (its rabbitmq_prometheus plugin, on every node), read by the infrastructure alerts. */
const isBrokerMetric = (name: string): boolean => /^(rabbitmq|erlang_vm)_/.test(name);
/**
 * Relay metrics that rules and panels read before the relay exposes them, each with the change
 * that adds it. Once the relay exposes one, a test below fails until it leaves this list.
 */
const AWAITED = new Map<string, string>([]);
/** Where a RabbitMQ node serves its Prometheus metrics (the plugin's default port, on the test broker's host). */
const brokerMetricsUrl = (): string => `http://${new URL(rabbitmqUrl()).hostname}:15692/metrics`;

/** Why a metric may be read: scraped from the relay, from RabbitMQ, made up by Prometheus, or awaited. */
function readable(name: string, exposed: Set<string>): boolean {
  return SYNTHETIC.has(name) || isBrokerMetric(name) || AWAITED.has(name) || exposed.has(name);
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
const dashboard = json<{ uid: string; panels: Panel[]; templating: { list: { query: { query: string } | string }[] } }>(
  'ops/grafana/dashboards/inbox-relay.json',
);
const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);

describe('alert rules and dashboard', () => {
  let relay: TestRelay;
  let exposed: Set<string>;
  let metrics: RelayMetrics | undefined;
  beforeAll(async () => {
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

  it('uses in alert expressions only metrics a running relay exposes (or RabbitMQ, or awaited ones)', () => {
    for (const rule of rules) {
      const used = metricNames(rule.expr);
      expect(used.size, rule.alert).toBeGreaterThan(0);
      for (const name of used) expect(readable(name, exposed), `${rule.alert} uses ${name}`).toBe(true);
    }
  });

  it('awaits only metrics the relay does not expose yet, each read by a rule', () => {
    const read = new Set(rules.flatMap((rule) => [...metricNames(rule.expr)]));
    for (const [name, change] of AWAITED) {
      expect(exposed.has(name), `${name} is exposed now (${change}): remove it from AWAITED`).toBe(false);
      expect(read.has(name), name).toBe(true);
    }
  });

  it("uses only RabbitMQ metrics that a RabbitMQ node's Prometheus plugin exposes", async (context) => {
    const response = await fetch(brokerMetricsUrl()).catch(() => undefined);
    // The plugin is enabled by .ci/run and the compose stack; a broker without it cannot tell.
    if (!response?.ok) context.skip(`no RabbitMQ Prometheus endpoint at ${brokerMetricsUrl()}`);
    const broker = exposedSeries(await response!.text());
    const expressions = [
      ...rules.map((rule) => ({ where: rule.alert, expr: rule.expr })),
      ...panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ where: panel.title, expr: target.expr }))),
    ];
    const used = expressions.flatMap(({ where, expr }) => [...metricNames(expr)].filter(isBrokerMetric).map((name) => ({ where, name })));
    expect(used.length).toBeGreaterThan(0);
    for (const { where, name } of used) expect(broker.has(name), `${where} uses ${name}`).toBe(true);
  });

  it('passes promtool check rules and the rule unit tests, where promtool is installed', (context) => {
    const checked = promtool(['check', 'rules', 'alerts.yml']);
    if (checked === undefined) context.skip('promtool is not installed (apt-get install prometheus)');
    expect(checked).toMatch(new RegExp(`SUCCESS: ${rules.length} rules found`));
    expect(promtool(['test', 'rules', 'alerts.test.yml'])).toMatch(/SUCCESS/);
  });

  it('uses in dashboard panels and variables only metrics a running relay exposes (or RabbitMQ, or awaited ones)', () => {
    const expressions = panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ where: panel.title, expr: target.expr })));
    expect(expressions.length).toBeGreaterThanOrEqual(20);
    for (const variable of dashboard.templating.list) {
      const query = typeof variable.query === 'string' ? variable.query : variable.query.query;
      const match = /^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,/.exec(query);
      expect(match, query).not.toBeNull();
      expressions.push({ where: `variable ${query}`, expr: match![1]! });
    }
    for (const { where, expr } of expressions) {
      const used = metricNames(expr);
      expect(used.size, where).toBeGreaterThan(0);
      for (const name of used) expect(readable(name, exposed), `${where} uses ${name}`).toBe(true);
    }
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

  it('shows on the dashboard every metric an alert reads', () => {
    const shown = new Set(panels.flatMap((panel) => (panel.targets ?? []).flatMap((target) => [...metricNames(target.expr)])));
    for (const rule of rules) for (const name of metricNames(rule.expr)) expect(shown.has(name), `${rule.alert}: ${name}`).toBe(true);
  });
});
