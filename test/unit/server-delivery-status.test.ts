import { describe, expect, it } from 'vitest';
import { DeliveryStatus } from '../../src/server/delivery-status.js';

describe('DeliveryStatus', () => {
  it('shows degraded while any source has a cause and ok once none has, each change once', () => {
    const status = new DeliveryStatus();
    expect(status.change()).toBeUndefined();
    status.set('stream', 'consumer lost');
    expect(status.change()).toEqual({ type: 'status', state: 'degraded', reason: 'consumer lost' });
    status.set('node', 'breaker open');
    expect(status.change()).toBeUndefined();
    status.set('stream', undefined);
    expect(status.change()).toBeUndefined();
    status.set('node', undefined);
    expect(status.change()).toEqual({ type: 'status', state: 'ok' });
    expect(status.change()).toBeUndefined();
  });

  it('cuts a long reason to 200 characters', () => {
    const status = new DeliveryStatus();
    status.set('node', 'x'.repeat(500));
    expect(status.change()?.reason).toHaveLength(200);
  });
});
