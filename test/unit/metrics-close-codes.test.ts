import { afterEach, describe, expect, it } from 'vitest';
import { RelayEvents } from '../../src/events.js';
import { CLIENT_OTHER_CLOSE_CODE, LABELLED_CLOSE_CODES, closeCodeLabel } from '../../src/metrics/bounded-labels.js';
import { createMetrics, type RelayMetrics } from '../../src/metrics/metrics.js';
import { CloseCode } from '../../src/protocol/close-codes.js';
import { sampleValue } from '../helpers/ops-prometheus.js';

describe('close code labels', () => {
  let metrics: RelayMetrics | undefined;
  afterEach(() => metrics?.close());

  it('keeps the codes the relay uses as numbers and puts every other code in client-other', () => {
    for (const code of Object.values(CloseCode)) expect(closeCodeLabel(code)).toBe(String(code));
    expect(closeCodeLabel(1006)).toBe('1006');
    expect(closeCodeLabel(1005)).toBe('1005');
    for (const code of [1003, 1010, 1014, 3000, 3999, 4000, 4002, 4999, 0, -1, 70_000])
      expect(closeCodeLabel(code)).toBe(CLIENT_OTHER_CLOSE_CODE);
  });

  it('shows 35 distinct client-chosen codes under the fixed set of labels only', async () => {
    const events = new RelayEvents();
    metrics = createMetrics(events, { connections: () => 0, streams: () => 0, inflight: () => 0 });
    const clientCodes = [...Array.from({ length: 30 }, (_, i) => 4100 + i), 3000, 3001, 1003, 1010, 1014];
    expect(new Set(clientCodes).size).toBe(35);
    for (const code of clientCodes) events.emit('connection-closed', code);
    events.emit('connection-closed', CloseCode.policyViolation);
    events.emit('connection-closed', 1006);
    const text = await metrics.render();
    const labels = text
      .split('\n')
      .filter((line) => line.startsWith('inbox_relay_connections_closed_total{'))
      .map((line) => /code="([^"]*)"/.exec(line)?.[1]);
    const allowed = new Set([...[...LABELLED_CLOSE_CODES].map(String), CLIENT_OTHER_CLOSE_CODE]);
    expect(labels.every((label) => label !== undefined && allowed.has(label))).toBe(true);
    expect(labels.sort()).toEqual(['1006', '1008', CLIENT_OTHER_CLOSE_CODE]);
    expect(sampleValue(text, 'inbox_relay_connections_closed_total', { code: CLIENT_OTHER_CLOSE_CODE })).toBe(35);
    expect(sampleValue(text, 'inbox_relay_connections_closed_total', { code: '1008' })).toBe(1);
  });
});
