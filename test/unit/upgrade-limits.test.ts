import { describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config.js';
import { PendingUpgrades, checkIntervalMs, maxSockets } from '../../src/server/upgrade-limits.js';

describe('bounds on sockets before the upgrade', () => {
  it('counts at most max pending sockets, each once, and frees a slot when one settles', () => {
    const pending = new PendingUpgrades<object>(2);
    const [a, b, c] = [{}, {}, {}];
    expect(pending.admit(a)).toBe(true);
    expect(pending.admit(b)).toBe(true);
    expect(pending.admit(c)).toBe(false);
    expect(pending.size).toBe(2);
    pending.settle(a);
    pending.settle(a); // the upgrade, then the close of the same socket
    pending.settle(c); // never counted
    expect(pending.size).toBe(1);
    expect(pending.admit(c)).toBe(true);
    expect(pending.admit({})).toBe(false);
  });

  it('checks the deadline at a tenth of it, at most every second', () => {
    expect(checkIntervalMs(DEFAULTS.upgradeTimeoutMs)).toBe(1_000);
    expect(checkIntervalMs(60_000)).toBe(1_000);
    expect(checkIntervalMs(300)).toBe(30);
    expect(checkIntervalMs(100)).toBe(10);
  });

  it('leaves room on the listener for every connection, every pending upgrade and as many refusals being closed', () => {
    expect(maxSockets({ maxConnections: DEFAULTS.maxConnections, maxPendingUpgrades: DEFAULTS.maxPendingUpgrades })).toBe(
      DEFAULTS.maxConnections + 2 * DEFAULTS.maxPendingUpgrades,
    );
  });
});
