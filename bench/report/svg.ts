/**
 * The run's chart as a self-contained SVG: throughput bars per scenario and system, and latency
 * percentiles per rate and system on a log scale.
 */
import { SYSTEM_LABELS, type SystemName } from '../systems/system.js';
import type { BenchResults } from './results.js';

const COLORS: Record<SystemName, string> = { amqplib: '#8c8c8c', relay: '#2b6cb0', 'web-stomp': '#dd6b20', 'relay-coalesced': '#90cdf4' };
const SYSTEMS: SystemName[] = ['amqplib', 'relay', 'web-stomp'];

const esc = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function text(x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(content)}</text>`;
}

function niceMax(value: number): number {
  if (value <= 0) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * exp >= value) return step * exp;
  return 10 * exp;
}

function legend(x: number, y: number, systems: SystemName[]): string {
  return systems
    .map(
      (s, i) =>
        `<rect x="${x + i * 215}" y="${y - 10}" width="12" height="12" fill="${COLORS[s]}"/>${text(x + i * 215 + 18, y, SYSTEM_LABELS[s], 'font-size="11"')}`,
    )
    .join('');
}

function throughputPanel(r: BenchResults, top: number, width: number, height: number): string {
  const withCoalesced = r.ratios.some((x) => x.coalesced !== undefined);
  const shown: SystemName[] = withCoalesced ? [...SYSTEMS, 'relay-coalesced'] : SYSTEMS;
  const groups = r.ratios.map((x) => ({
    name: `${x.queueType}, ${x.users.toLocaleString('en-US')} users`,
    values: withCoalesced ? [x.ceiling, x.relay, x.stomp, x.coalesced] : [x.ceiling, x.relay, x.stomp],
  }));
  for (const x of r.backlogRatios) {
    groups.push({ name: `backlog: ${x.queueType}, ${x.users.toLocaleString('en-US')}`, values: shown.map((s) => x.systems[s]?.median) });
  }
  const title =
    r.backlogRatios.length > 0
      ? 'Throughput: messages consumed per second, closed loop and backlog drain (higher is better)'
      : 'Throughput: messages consumed per second (higher is better)';
  const parts: string[] = [text(20, top + 18, title, 'font-size="15" font-weight="bold"')];
  if (groups.length === 0) return parts.concat(text(20, top + 50, 'not measured in this run', 'font-size="12"')).join('');
  const left = 70;
  const plotTop = top + 50;
  const plotHeight = height - 100;
  const plotWidth = width - left - 20;
  const max = niceMax(Math.max(1, ...groups.flatMap((g) => g.values.filter((v): v is number => v !== undefined))));
  for (let i = 0; i <= 5; i += 1) {
    const value = (max / 5) * i;
    const y = plotTop + plotHeight - (plotHeight * i) / 5;
    parts.push(
      `<line x1="${left}" y1="${y}" x2="${left + plotWidth}" y2="${y}" stroke="#e2e2e2"/>`,
      text(left - 6, y + 4, value.toLocaleString('en-US'), 'font-size="11" text-anchor="end"'),
    );
  }
  const groupWidth = plotWidth / groups.length;
  const barWidth = Math.min(50, (groupWidth - 30) / shown.length);
  groups.forEach((g, gi) => {
    const x0 = left + gi * groupWidth + (groupWidth - barWidth * shown.length) / 2;
    g.values.forEach((v, si) => {
      if (v === undefined) return;
      const h = (plotHeight * v) / max;
      const x = x0 + si * barWidth;
      const system = shown[si] as SystemName;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${(plotTop + plotHeight - h).toFixed(1)}" width="${(barWidth - 4).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[system]}"><title>${esc(`${SYSTEM_LABELS[system]}: ${v} msgs/s`)}</title></rect>`,
      );
      parts.push(
        text(x + (barWidth - 4) / 2, plotTop + plotHeight - h - 4, v.toLocaleString('en-US'), 'font-size="10" text-anchor="middle"'),
      );
    });
    parts.push(text(left + gi * groupWidth + groupWidth / 2, plotTop + plotHeight + 18, g.name, 'font-size="12" text-anchor="middle"'));
  });
  parts.push(legend(left - 50, top + height - 20, shown));
  return parts.join('');
}

function latencyPanel(r: BenchResults, top: number, width: number, height: number): string {
  const parts: string[] = [
    text(20, top + 18, 'Latency, publish to client receipt, ms, log scale (lower is better)', 'font-size="15" font-weight="bold"'),
  ];
  const rates = [...new Set(r.latency.map((l) => l.rate))];
  if (rates.length === 0) return parts.concat(text(20, top + 50, 'not measured in this run', 'font-size="12"')).join('');
  const percentiles: [string, 'p50Ms' | 'p99Ms' | 'p999Ms' | 'maxMs'][] = [
    ['p50', 'p50Ms'],
    ['p99', 'p99Ms'],
    ['p99.9', 'p999Ms'],
    ['max', 'maxMs'],
  ];
  const groups = rates.flatMap((rate) =>
    percentiles.map(([name, key]) => ({
      name: `${name}`,
      rate,
      values: SYSTEMS.map((s) => r.latency.find((l) => l.rate === rate && l.system === s)?.latency?.[key]),
    })),
  );
  const left = 70;
  const plotTop = top + 50;
  const plotHeight = height - 120;
  const plotWidth = width - left - 20;
  const all = groups.flatMap((g) => g.values.filter((v): v is number => v !== undefined && v > 0));
  const lo = 10 ** Math.floor(Math.log10(Math.max(0.01, Math.min(...all))));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(lo * 10, ...all)));
  const y = (v: number): number =>
    plotTop + plotHeight - (plotHeight * (Math.log10(v) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo));
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    parts.push(
      `<line x1="${left}" y1="${y(d).toFixed(1)}" x2="${left + plotWidth}" y2="${y(d).toFixed(1)}" stroke="#e2e2e2"/>`,
      text(left - 6, y(d) + 4, d >= 1 ? d.toLocaleString('en-US') : String(d), 'font-size="11" text-anchor="end"'),
    );
  }
  const groupWidth = plotWidth / groups.length;
  const barWidth = Math.min(30, (groupWidth - 12) / 3);
  groups.forEach((g, gi) => {
    const x0 = left + gi * groupWidth + (groupWidth - barWidth * 3) / 2;
    g.values.forEach((v, si) => {
      if (v === undefined || v <= 0) return;
      const system = SYSTEMS[si] as SystemName;
      const yTop = y(v);
      const x = x0 + si * barWidth;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${yTop.toFixed(1)}" width="${(barWidth - 3).toFixed(1)}" height="${(plotTop + plotHeight - yTop).toFixed(1)}" fill="${COLORS[system]}"><title>${esc(`${SYSTEM_LABELS[system]}, ${g.rate} msgs/s, ${g.name}: ${v} ms`)}</title></rect>`,
      );
      parts.push(
        text(x + (barWidth - 3) / 2, yTop - 3, v < 10 ? v.toFixed(1) : String(Math.round(v)), 'font-size="9" text-anchor="middle"'),
      );
    });
    parts.push(text(left + gi * groupWidth + groupWidth / 2, plotTop + plotHeight + 16, g.name, 'font-size="11" text-anchor="middle"'));
  });
  rates.forEach((rate, ri) => {
    const x = left + (ri * percentiles.length + percentiles.length / 2) * groupWidth;
    parts.push(
      text(
        x,
        plotTop + plotHeight + 34,
        `${rate.toLocaleString('en-US')} msgs/s`,
        'font-size="12" font-weight="bold" text-anchor="middle"',
      ),
    );
  });
  parts.push(legend(left, top + height - 20, SYSTEMS));
  return parts.join('');
}

export function renderSvg(r: BenchResults): string {
  const width = 960;
  const panel = 380;
  const height = 60 + panel * 2;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    text(
      20,
      30,
      `inbox-relay benchmark ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC (${r.mode}), ${String(r.machine.cpus)} cores, co-located`,
      'font-size="17" font-weight="bold"',
    ),
    throughputPanel(r, 45, width, panel),
    latencyPanel(r, 45 + panel, width, panel),
    '</svg>',
    '',
  ].join('\n');
}
