/** Who gets which admin endpoint (admin-server.ts), and the start-up security warnings (security-warnings.ts). */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { bearerMatches, routeAdminRequest } from '../../src/server/admin-server.js';
import { isLoopback, securityWarnings } from '../../src/server/security-warnings.js';

const TOKEN = 'admin-unit-0123456789-abcdefghijklmnopqrstuvwxyz';
const DIGEST = createHash('sha256').update(TOKEN).digest();
const SECRET = 'warn-unit-0123456789-abcdefghijklmnopqrstuvwxyz';

const request = (method: string, url: string, authorization?: string) => ({ method, url, authorization });

describe('admin access', () => {
  const guarded = { tokenDigest: DIGEST, metricsRequireToken: false };
  const all = { tokenDigest: DIGEST, metricsRequireToken: true };
  const open = { tokenDigest: undefined, metricsRequireToken: false };

  it('refuses POST /drain without the bearer token, or with another one', () => {
    expect(routeAdminRequest(request('POST', '/drain'), guarded)).toBe('unauthorized');
    expect(routeAdminRequest(request('POST', '/drain', `Bearer ${TOKEN}x`), guarded)).toBe('unauthorized');
    expect(routeAdminRequest(request('POST', '/drain', `Basic ${TOKEN}`), guarded)).toBe('unauthorized');
    expect(routeAdminRequest(request('POST', '/drain', TOKEN), guarded)).toBe('unauthorized');
    expect(routeAdminRequest(request('POST', '/drain', 'Bearer '), guarded)).toBe('unauthorized');
  });

  it('drains with the token (the scheme is case-insensitive), and only on POST', () => {
    expect(routeAdminRequest(request('POST', '/drain', `Bearer ${TOKEN}`), guarded)).toBe('drain');
    expect(routeAdminRequest(request('POST', '/drain?now', `bearer ${TOKEN}`), guarded)).toBe('drain');
    expect(routeAdminRequest(request('GET', '/drain', `Bearer ${TOKEN}`), guarded)).toBe('method-not-allowed');
  });

  it('guards /metrics only with METRICS_REQUIRE_TOKEN', () => {
    expect(routeAdminRequest(request('GET', '/metrics'), guarded)).toBe('metrics');
    expect(routeAdminRequest(request('GET', '/metrics'), all)).toBe('unauthorized');
    expect(routeAdminRequest(request('GET', '/metrics', `Bearer ${TOKEN}`), all)).toBe('metrics');
  });

  it('keeps /healthz and /readyz open for probes, whatever is configured', () => {
    for (const access of [open, guarded, all]) {
      expect(routeAdminRequest(request('GET', '/healthz'), access)).toBe('healthz');
      expect(routeAdminRequest(request('GET', '/readyz'), access)).toBe('readyz');
      expect(routeAdminRequest(request('GET', '/nope'), access)).toBe('not-found');
    }
  });

  it('leaves everything open without a token (the listener address is the guard then)', () => {
    expect(routeAdminRequest(request('POST', '/drain'), open)).toBe('drain');
    expect(routeAdminRequest(request('GET', '/metrics'), open)).toBe('metrics');
  });

  it('compares the token in full', () => {
    expect(bearerMatches(`Bearer ${TOKEN}`, DIGEST)).toBe(true);
    expect(bearerMatches(`Bearer ${TOKEN.slice(0, -1)}`, DIGEST)).toBe(false);
    expect(bearerMatches(undefined, DIGEST)).toBe(false);
    // An empty candidate against the digest of an empty token still needs the header.
    expect(bearerMatches(undefined, createHash('sha256').update('').digest())).toBe(false);
  });
});

describe('security warnings', () => {
  const REPLAY_KEY = 'replay-0123456789-abcdefghijklmnopq';
  const warningsOf = (env: Record<string, string>) => securityWarnings(loadConfig({ JWT_SECRET: SECRET, REPLAY_KEY, ...env }));

  it('names JWT_AUDIENCE and JWT_ISSUER when they are unset', () => {
    expect(warningsOf({})).toEqual([
      {
        settings: ['JWT_AUDIENCE', 'JWT_ISSUER'],
        message:
          'JWT_AUDIENCE and JWT_ISSUER are not set: tokens that carry an aud claim are refused; a token from any issuer that holds the key is accepted',
      },
    ]);
    expect(warningsOf({ JWT_ISSUER: 'https://issuer.example' }).map((w) => w.settings)).toEqual([['JWT_AUDIENCE']]);
    expect(warningsOf({ JWT_AUDIENCE: 'inbox-relay' }).map((w) => w.settings)).toEqual([['JWT_ISSUER']]);
    expect(warningsOf({ JWT_AUDIENCE: 'inbox-relay', JWT_ISSUER: 'https://issuer.example' })).toEqual([]);
  });

  it('warns about an admin port open beyond loopback without a token, and about JWT_MAX_AGE=0', () => {
    const quiet = { JWT_AUDIENCE: 'inbox-relay', JWT_ISSUER: 'https://issuer.example' };
    expect(warningsOf({ ...quiet, ADMIN_HOST: '0.0.0.0' }).map((w) => w.settings)).toEqual([['ADMIN_TOKEN', 'ADMIN_HOST']]);
    expect(warningsOf({ ...quiet, ADMIN_HOST: '0.0.0.0', ADMIN_TOKEN: TOKEN })).toEqual([]);
    expect(warningsOf({ ...quiet, ADMIN_HOST: '127.0.0.1' })).toEqual([]);
    expect(warningsOf({ ...quiet, JWT_MAX_AGE: '0' }).map((w) => w.settings)).toEqual([['JWT_MAX_AGE']]);
    for (const warning of warningsOf({ ADMIN_HOST: '::', JWT_MAX_AGE: '0' })) expect(warning.message).not.toContain(SECRET);
  });

  it('warns about a publish API open beyond loopback (plain HTTP), without naming its token', () => {
    const quiet = { JWT_AUDIENCE: 'inbox-relay', JWT_ISSUER: 'https://issuer.example' };
    const publishToken = 'publish-unit-0123456789-abcdefghijklmnopqrstuvw';
    const publish = { ...quiet, PUBLISH_PORT: '8090', PUBLISH_TOKEN: publishToken };
    expect(warningsOf(publish)).toEqual([]);
    const [warning, ...rest] = warningsOf({ ...publish, PUBLISH_HOST: '0.0.0.0' });
    expect(rest).toEqual([]);
    expect(warning).toMatchObject({ settings: ['PUBLISH_HOST'], message: expect.stringMatching(/plain HTTP/) as unknown });
    expect(warning!.message).not.toContain(publishToken);
  });

  it('warns that replays of dead letters are deduplicated without REPLAY_KEY', () => {
    const quiet = { JWT_AUDIENCE: 'inbox-relay', JWT_ISSUER: 'https://issuer.example' };
    const [warning, ...rest] = securityWarnings(loadConfig({ JWT_SECRET: SECRET, ...quiet }));
    expect(rest).toEqual([]);
    expect(warning).toMatchObject({ settings: ['REPLAY_KEY'], message: expect.stringMatching(/dlq replay/) as unknown });
  });

  it('tells loopback addresses apart', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) expect(isLoopback(host), host).toBe(true);
    for (const host of ['0.0.0.0', '::', '10.0.0.5', '', '127.0.0.1.example']) expect(isLoopback(host), host).toBe(false);
  });
});
