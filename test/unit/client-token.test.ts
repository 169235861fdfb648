import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../src/client/clock.js';
import { jwtExpiryMs, jwtSubject, MIN_TOKEN_REFRESH_DELAY_MS, tokenRefreshDelayMs } from '../../src/client/token.js';
import { TokenRefresher } from '../../src/client/token-refresher.js';

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** An unsigned JWT-shaped token: the client never verifies signatures. */
function fakeJwt(claims: Record<string, unknown>): string {
  return `${base64url('{"alg":"HS256","typ":"JWT"}')}.${base64url(JSON.stringify(claims))}.c2ln`;
}

describe('JWT claims', () => {
  it('reads exp (as ms) and sub without verifying', () => {
    const token = fakeJwt({ sub: 'user-é@x', exp: 1_700_000_000 });
    expect(jwtExpiryMs(token)).toBe(1_700_000_000_000);
    expect(jwtSubject(token)).toBe('user-é@x');
  });

  it.each([['opaque-token'], ['a.b.c'], [fakeJwt({ sub: 'u' })], [fakeJwt({ exp: '1700000000' })], ['a.' + base64url('null') + '.c']])(
    'returns undefined for %s',
    (token) => {
      expect(jwtExpiryMs(token)).toBeUndefined();
    },
  );
});

describe('tokenRefreshDelayMs', () => {
  it('refreshes leadMs before expiry when the token lives long enough', () => {
    expect(tokenRefreshDelayMs(1_000_000 + 3_600_000, 1_000_000, 30_000)).toBe(3_570_000);
  });

  it('refreshes at half the remaining lifetime when it is short, and never sooner than the minimum', () => {
    expect(tokenRefreshDelayMs(40_000, 0, 30_000)).toBe(20_000);
    expect(tokenRefreshDelayMs(500, 0, 30_000)).toBe(MIN_TOKEN_REFRESH_DELAY_MS);
    expect(tokenRefreshDelayMs(0, 10_000, 30_000)).toBe(MIN_TOKEN_REFRESH_DELAY_MS);
  });
});

describe('TokenRefresher', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends a fresh token leadMs before expiry, then schedules the next refresh from it', async () => {
    const sent: string[] = [];
    let issued = 0;
    const refresher = new TokenRefresher({
      clock: systemClock,
      leadMs: 30_000,
      fetch: async () => fakeJwt({ exp: (Date.now() + 120_000) / 1000, n: ++issued }),
      send: (token) => sent.push(token) > 0,
      onError: () => undefined,
    });
    refresher.start(fakeJwt({ exp: 120 }));
    await vi.advanceTimersByTimeAsync(89_999);
    expect(sent).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toHaveLength(1);
    expect(jwtExpiryMs(sent[0] ?? '')).toBe(210_000);
    await vi.advanceTimersByTimeAsync(90_000);
    expect(sent).toHaveLength(2);
    refresher.stop();
    await vi.advanceTimersByTimeAsync(1_000_000);
    expect(sent).toHaveLength(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('retries a failing provider before expiry and reports each failure', async () => {
    const errors: unknown[] = [];
    let calls = 0;
    const refresher = new TokenRefresher({
      clock: systemClock,
      leadMs: 30_000,
      fetch: async () => {
        calls += 1;
        throw new Error('provider down');
      },
      send: () => true,
      onError: (error) => errors.push(error),
    });
    refresher.start(fakeJwt({ exp: 60 }));
    // 60 s left < 2 leads: first try at 30 s, then at half of what remains each time.
    await vi.advanceTimersByTimeAsync(30_000);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(15_000);
    expect(calls).toBe(2);
    expect(errors).toHaveLength(2);
    refresher.stop();
  });

  it('does not schedule anything for a token without exp', () => {
    const refresher = new TokenRefresher({
      clock: systemClock,
      leadMs: 30_000,
      fetch: async () => 'x',
      send: () => true,
      onError: () => undefined,
    });
    refresher.start('opaque');
    expect(vi.getTimerCount()).toBe(0);
  });
});
