import { describe, expect, it } from 'vitest';
import { DEFAULTS, defaultNodeId, loadConfig } from '../../src/config.js';

const SECRET = 'x'.repeat(32);

function errorOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    return (error as Error).message;
  }
  return 'no error';
}

describe('config', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig({ JWT_SECRET: SECRET });
    expect(config).toMatchObject({
      port: DEFAULTS.port,
      queueType: 'quorum',
      windowDefault: 20,
      windowMax: 100,
      redisUrl: undefined,
      allowedOrigins: [],
      maxConnectionsPerUser: 10,
      jwt: { algorithms: ['HS256'], issuer: undefined, audience: undefined },
    });
  });

  it('names the variable in every error', () => {
    expect(errorOf({})).toMatch(/^JWT_SECRET: required/);
    expect(errorOf({ JWT_SECRET: 'short' })).toMatch(/^JWT_SECRET: must be at least 32/);
    expect(errorOf({ JWT_SECRET: SECRET, PORT: 'eighty' })).toMatch(/^PORT: must be a whole number/);
    expect(errorOf({ JWT_SECRET: SECRET, QUEUE_TYPE: 'stream' })).toMatch(/^QUEUE_TYPE: must be quorum or classic/);
    expect(errorOf({ JWT_SECRET: SECRET, RABBITMQ_URL: 'http://x' })).toMatch(/^RABBITMQ_URL: must be a URL/);
    expect(errorOf({ JWT_SECRET: SECRET, JWT_ALGORITHMS: 'none' })).toMatch(/^JWT_ALGORITHMS: unsupported algorithm none/);
    expect(errorOf({ JWT_SECRET: SECRET, JWT_ALGORITHMS: 'RS256' })).toMatch(/^JWT_ALGORITHMS: RS256 does not fit JWT_SECRET/);
    expect(errorOf({ JWT_SECRET: SECRET, WINDOW_DEFAULT: '200' })).toMatch(/^WINDOW_DEFAULT: must be <= WINDOW_MAX/);
    expect(errorOf({ JWT_SECRET: SECRET, JWT_PUBLIC_KEY_FILE: '/nonexistent' })).toMatch(
      /^JWT_SECRET: set JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both/,
    );
    expect(errorOf({ JWT_PUBLIC_KEY_FILE: '/nonexistent/key.pem' })).toMatch(/^JWT_PUBLIC_KEY_FILE: cannot read/);
    expect(errorOf({ JWT_SECRET: SECRET, MAX_CONNECTIONS_PER_USER: '-1' })).toMatch(/^MAX_CONNECTIONS_PER_USER: must be >= 0/);
    expect(errorOf({ JWT_SECRET: SECRET, MAX_CONNECTIONS_PER_USER: 'ten' })).toMatch(/^MAX_CONNECTIONS_PER_USER: must be a whole number/);
    expect(errorOf({ JWT_SECRET: SECRET, NODE_ID: 'node 1' })).toMatch(/^NODE_ID: must be 1-64 of/);
    expect(errorOf({ JWT_SECRET: SECRET, NODE_ID: 'n'.repeat(65) })).toMatch(/^NODE_ID: must be 1-64 of/);
  });

  it('takes NODE_ID as given, and defaults it to <hostname>-<pid> made valid', () => {
    expect(loadConfig({ JWT_SECRET: SECRET, NODE_ID: 'relay-0.eu:a_1' }).nodeId).toBe('relay-0.eu:a_1');
    expect(loadConfig({ JWT_SECRET: SECRET }).nodeId).toBe(defaultNodeId());
    expect(defaultNodeId('relay-7.internal', 42)).toBe('relay-7.internal-42');
    expect(defaultNodeId('höst name', 42)).toBe('h-st-name-42');
    expect(defaultNodeId('', 42)).toBe('node-42');
    const long = defaultNodeId('h'.repeat(100), 1234567);
    expect([long.length, long.endsWith('-1234567')]).toEqual([64, true]);
  });

  it('takes MAX_CONNECTIONS_PER_USER as given, 0 (no limit) included', () => {
    expect(loadConfig({ JWT_SECRET: SECRET, MAX_CONNECTIONS_PER_USER: '3' }).maxConnectionsPerUser).toBe(3);
    expect(loadConfig({ JWT_SECRET: SECRET, MAX_CONNECTIONS_PER_USER: '0' }).maxConnectionsPerUser).toBe(0);
  });

  it('takes ALLOWED_ORIGINS as origins in the form browsers send them, or * alone for any', () => {
    const origins = (value: string) => loadConfig({ JWT_SECRET: SECRET, ALLOWED_ORIGINS: value }).allowedOrigins;
    expect(origins('')).toEqual([]);
    expect(origins('*')).toBe('*');
    expect(origins(' * ')).toBe('*');
    expect(origins('https://App.Example:443, http://127.0.0.1:3000/')).toEqual(['https://app.example', 'http://127.0.0.1:3000']);
    expect(errorOf({ JWT_SECRET: SECRET, ALLOWED_ORIGINS: '*,https://a.example' })).toMatch(/^ALLOWED_ORIGINS: \* allows every origin/);
    for (const bad of ['https://a.example/app', 'a.example', 'null', 'https://a.example/?x=1', 'https://user@a.example'])
      expect(errorOf({ JWT_SECRET: SECRET, ALLOWED_ORIGINS: bad }), bad).toMatch(/^ALLOWED_ORIGINS: .* is not an origin like/);
  });

  it('does not modify the environment it reads', () => {
    const env = Object.freeze({ JWT_SECRET: SECRET, ALLOWED_ORIGINS: 'https://a.example, https://b.example' });
    expect(loadConfig(env).allowedOrigins).toEqual(['https://a.example', 'https://b.example']);
  });
});
