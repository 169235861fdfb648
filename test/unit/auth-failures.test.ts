import { describe, expect, it } from 'vitest';
import { AuthFailureLimiter, OPEN_AUTH_GATE, addressKey } from '../../src/overload/auth-failures.js';

describe('failed authentications per address', () => {
  it('lets an address fail `rate` times at once, then once per 60/rate s, and never counts successes', () => {
    const limiter = new AuthFailureLimiter(3);
    for (let i = 0; i < 3; i += 1) {
      expect(limiter.retryAfterMs('198.51.100.1', 0)).toBe(0);
      limiter.failed('198.51.100.1', 0);
    }
    expect(limiter.retryAfterMs('198.51.100.1', 0)).toBe(20_000);
    expect(limiter.retryAfterMs('198.51.100.1', 15_000)).toBe(5_000);
    expect(limiter.retryAfterMs('198.51.100.2', 15_000)).toBe(0);
    expect(limiter.retryAfterMs('198.51.100.1', 20_000)).toBe(0);
    limiter.failed('198.51.100.1', 20_000);
    expect(limiter.retryAfterMs('198.51.100.1', 20_000)).toBe(20_000);
  });

  it('forgets an address once its bucket refilled, and never keeps more than maxAddresses', () => {
    const limiter = new AuthFailureLimiter(2, 3);
    limiter.failed('192.0.2.1', 0);
    expect(limiter.size).toBe(1);
    expect(limiter.retryAfterMs('192.0.2.1', 29_999)).toBe(0);
    expect(limiter.size).toBe(1);
    expect(limiter.retryAfterMs('192.0.2.1', 30_000)).toBe(0);
    expect(limiter.size).toBe(0);

    for (const address of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) {
      limiter.failed(address, 0);
      limiter.failed(address, 0);
    }
    limiter.failed('192.0.2.1', 0); // most recent again: .2 is now the one that failed longest ago
    limiter.failed('192.0.2.4', 0);
    expect(limiter.size).toBe(3);
    expect(limiter.retryAfterMs('192.0.2.2', 0)).toBe(0);
    expect(limiter.retryAfterMs('192.0.2.1', 0)).toBeGreaterThan(0);
    expect(limiter.retryAfterMs('192.0.2.3', 0)).toBeGreaterThan(0);
  });

  it('is off with rate 0: nothing counted, nothing refused', () => {
    const limiter = new AuthFailureLimiter(0);
    for (let i = 0; i < 100; i += 1) limiter.failed('192.0.2.9', 0);
    expect(limiter.retryAfterMs('192.0.2.9', 0)).toBe(0);
    expect(limiter.size).toBe(0);
    expect(limiter.gate('192.0.2.9', () => 0)).toBe(OPEN_AUTH_GATE);
  });

  it('binds a gate to one address and the clock', () => {
    let now = 0;
    const limiter = new AuthFailureLimiter(1);
    const gate = limiter.gate('::ffff:192.0.2.5', () => now);
    expect(gate.retryAfterMs()).toBe(0);
    gate.failed();
    expect(gate.retryAfterMs()).toBe(60_000);
    expect(limiter.retryAfterMs('192.0.2.5', 0)).toBe(60_000);
    now = 60_000;
    expect(gate.retryAfterMs()).toBe(0);
  });

  it('keys IPv4 as is, IPv4-mapped IPv6 as IPv4 and IPv6 by its /64', () => {
    expect(addressKey('203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('::FFFF:203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('2001:db8:0:1:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:db8:0:1::1')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:0DB8:0000:0001::ffff')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('64:ff9b::192.0.2.33')).toBe('64:ff9b:0:0::/64');
    expect(addressKey(undefined)).toBe('unknown');
  });
});
