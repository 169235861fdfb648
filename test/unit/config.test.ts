import { describe, expect, it } from 'vitest';
import { DEFAULTS, defaultNodeId, loadConfig } from '../../src/config.js';
import { configVariables, text } from '../helpers/ops-files.js';

/** 32 characters that pass the secret floor (secret-strength.ts). */
const SECRET = 'cfg-0123456789-abcdefghijklmnopq';

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
      jwt: { algorithms: ['HS256'], issuer: undefined, audience: undefined, maxAgeS: 24 * 3600, clockToleranceS: 30 },
      adminHost: '127.0.0.1',
      adminPort: 9090,
      adminToken: undefined,
      metricsRequireToken: false,
    });
  });

  it('reads the admin settings', () => {
    const token = 'admin-0123456789-abcdefghijklmnopqrstuvwxyz';
    expect(loadConfig({ JWT_SECRET: SECRET, ADMIN_HOST: '0.0.0.0', ADMIN_TOKEN: token, METRICS_REQUIRE_TOKEN: '1' })).toMatchObject({
      adminHost: '0.0.0.0',
      adminToken: token,
      metricsRequireToken: true,
    });
    expect(loadConfig({ JWT_SECRET: SECRET, METRICS_REQUIRE_TOKEN: 'false' }).metricsRequireToken).toBe(false);
    expect(errorOf({ JWT_SECRET: SECRET, METRICS_REQUIRE_TOKEN: '1' })).toMatch(/^METRICS_REQUIRE_TOKEN: needs ADMIN_TOKEN/);
    expect(errorOf({ JWT_SECRET: SECRET, METRICS_REQUIRE_TOKEN: 'yes please' })).toMatch(/^METRICS_REQUIRE_TOKEN: must be 1 or 0/);
    expect(errorOf({ JWT_SECRET: SECRET, ADMIN_TOKEN: 'changeme' })).toMatch(/^ADMIN_TOKEN: must be at least 32/);
    expect(errorOf({ JWT_SECRET: SECRET, ADMIN_TOKEN: 'z'.repeat(40) })).toMatch(/^ADMIN_TOKEN: is one piece repeated/);
    expect(errorOf({ JWT_SECRET: SECRET, ADMIN_TOKEN: `${token} with spaces` })).toMatch(/^ADMIN_TOKEN: must be printable ASCII/);
  });

  it('keeps the publish API off unless PUBLISH_PORT is set, and then requires a strong PUBLISH_TOKEN', () => {
    const token = 'publish-0123456789-abcdefghijklmnopqrstuvwxyz';
    expect(loadConfig({ JWT_SECRET: SECRET }).publishApi).toBeUndefined();
    expect(loadConfig({ JWT_SECRET: SECRET, PUBLISH_PORT: '8090', PUBLISH_TOKEN: token }).publishApi).toEqual({
      port: 8090,
      host: '127.0.0.1',
      token,
      maxBatch: 100,
      maxBodyBytes: 2 * 1024 * 1024,
    });
    expect(
      loadConfig({
        JWT_SECRET: SECRET,
        PUBLISH_PORT: '0',
        PUBLISH_TOKEN: token,
        PUBLISH_HOST: '0.0.0.0',
        PUBLISH_MAX_BATCH: '10',
        PUBLISH_MAX_BODY_BYTES: '65536',
      }).publishApi,
    ).toMatchObject({ port: 0, host: '0.0.0.0', maxBatch: 10, maxBodyBytes: 65_536 });
    expect(errorOf({ JWT_SECRET: SECRET, PUBLISH_PORT: '8090' })).toMatch(/^PUBLISH_TOKEN: required when PUBLISH_PORT is set/);
    expect(errorOf({ JWT_SECRET: SECRET, PUBLISH_PORT: '8090', PUBLISH_TOKEN: 'changeme' })).toMatch(/^PUBLISH_TOKEN: must be at least 32/);
    expect(errorOf({ JWT_SECRET: SECRET, PUBLISH_PORT: '8090', PUBLISH_TOKEN: `${token} x` })).toMatch(
      /^PUBLISH_TOKEN: must be printable ASCII/,
    );
    expect(errorOf({ JWT_SECRET: SECRET, PUBLISH_PORT: '8090', PUBLISH_TOKEN: token, ADMIN_TOKEN: token })).toMatch(
      /^PUBLISH_TOKEN: must differ from ADMIN_TOKEN/,
    );
    expect(errorOf({ JWT_SECRET: SECRET, PUBLISH_TOKEN: token })).toMatch(/^PUBLISH_TOKEN: is set but PUBLISH_PORT is not/);
    expect(errorOf({ JWT_SECRET: SECRET, PUBLISH_PORT: 'http', PUBLISH_TOKEN: token })).toMatch(/^PUBLISH_PORT: must be a whole number/);
    expect(errorOf({ JWT_SECRET: SECRET, PUBLISH_PORT: '1', PUBLISH_TOKEN: token, PUBLISH_MAX_BATCH: '0' })).toMatch(
      /^PUBLISH_MAX_BATCH: /,
    );
  });

  it('reads JWT_MAX_AGE as seconds or a duration, 0 for no limit, and JWT_CLOCK_TOLERANCE_S', () => {
    const jwtOf = (env: Record<string, string>) => loadConfig({ JWT_SECRET: SECRET, ...env }).jwt;
    expect(jwtOf({ JWT_MAX_AGE: '3600' }).maxAgeS).toBe(3600);
    expect(jwtOf({ JWT_MAX_AGE: '90s' }).maxAgeS).toBe(90);
    expect(jwtOf({ JWT_MAX_AGE: '30m' }).maxAgeS).toBe(1800);
    expect(jwtOf({ JWT_MAX_AGE: '12h' }).maxAgeS).toBe(43_200);
    expect(jwtOf({ JWT_MAX_AGE: '7d' }).maxAgeS).toBe(604_800);
    expect(jwtOf({ JWT_MAX_AGE: '0' }).maxAgeS).toBe(0);
    expect(jwtOf({ JWT_CLOCK_TOLERANCE_S: '5' }).clockToleranceS).toBe(5);
    expect(errorOf({ JWT_SECRET: SECRET, JWT_MAX_AGE: '1 day' })).toMatch(/^JWT_MAX_AGE: must be seconds or a duration/);
    expect(errorOf({ JWT_SECRET: SECRET, JWT_MAX_AGE: '1y' })).toMatch(/^JWT_MAX_AGE: must be seconds or a duration/);
    expect(errorOf({ JWT_SECRET: SECRET, JWT_MAX_AGE: '400d' })).toMatch(/^JWT_MAX_AGE: must be at most/);
    expect(errorOf({ JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_S: '301' })).toMatch(/^JWT_CLOCK_TOLERANCE_S: must be <= 300/);
  });

  it('refuses placeholder and low-entropy JWT secrets, naming JWT_SECRET and never echoing the value', () => {
    for (const weak of [
      'secret',
      'x'.repeat(64),
      'changemechangemechangemechangeme',
      'your-secret-here-your-secret-here',
      'replace-with-a-random-secret-of-32-or-more-characters',
      'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab12',
      '0101010101010101010101012323232323232323',
    ]) {
      const message = errorOf({ JWT_SECRET: weak });
      expect(message, weak).toMatch(/^JWT_SECRET: /);
      expect(message, weak).not.toContain(weak);
    }
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

  it('reads RABBITMQ_URL as one URL or a list of nodes, and the AMQP heartbeat and replicas that go with it', () => {
    const one = loadConfig({ JWT_SECRET: SECRET });
    expect([one.rabbitmqUrls, one.rabbitmqHeartbeatS, one.queueReplicas]).toEqual([[DEFAULTS.rabbitmqUrl], 10, undefined]);
    const nodes = 'amqp://u:p@h1:5672, amqp://u:p@h2:5672,amqps://u:p@h3:5671';
    const three = loadConfig({ JWT_SECRET: SECRET, RABBITMQ_URL: nodes, RABBITMQ_HEARTBEAT_S: '5' });
    expect(three.rabbitmqUrls).toEqual(['amqp://u:p@h1:5672', 'amqp://u:p@h2:5672', 'amqps://u:p@h3:5671']);
    expect([three.rabbitmqUrl, three.rabbitmqHeartbeatS, three.queueReplicas]).toEqual(['amqp://u:p@h1:5672', 5, 3]);
    expect(loadConfig({ JWT_SECRET: SECRET, RABBITMQ_URL: nodes, QUEUE_REPLICAS: '5' }).queueReplicas).toBe(5);
    expect(errorOf({ JWT_SECRET: SECRET, RABBITMQ_URL: 'amqp://h1,http://h2' })).toBe(
      'RABBITMQ_URL: entry 2 of 2 must be a URL starting with amqp:// or amqps://',
    );
    expect(errorOf({ JWT_SECRET: SECRET, RABBITMQ_URL: 'amqp://h1,,amqp://h2' })).toBe(
      'RABBITMQ_URL: entry 2 of 3 is empty (a stray comma?)',
    );
    expect(errorOf({ JWT_SECRET: SECRET, RABBITMQ_URL: 'amqp://h1,amqp://h1' })).toBe('RABBITMQ_URL: names the same URL twice');
    expect(errorOf({ JWT_SECRET: SECRET, RABBITMQ_HEARTBEAT_S: '0' })).toMatch(/^RABBITMQ_HEARTBEAT_S: must be >= 1/);
  });

  it('reads Redis as REDIS_URL or REDIS_SENTINELS with REDIS_SENTINEL_NAME, never both', () => {
    expect(loadConfig({ JWT_SECRET: SECRET }).redis).toBeUndefined();
    expect(loadConfig({ JWT_SECRET: SECRET, REDIS_URL: 'redis://h:6379' })).toMatchObject({
      redis: 'redis://h:6379',
      redisUrl: 'redis://h:6379',
    });
    const sentinel = loadConfig({
      JWT_SECRET: SECRET,
      REDIS_SENTINELS: 's1:26379, [::1]:26380',
      REDIS_SENTINEL_NAME: 'inbox-relay',
      REDIS_PASSWORD: 'pw',
    });
    expect(sentinel.redisUrl).toBeUndefined();
    expect(sentinel.redis).toEqual({
      sentinels: [
        { host: 's1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'inbox-relay',
      password: 'pw',
      sentinelPassword: undefined,
    });
    const both = { JWT_SECRET: SECRET, REDIS_URL: 'redis://h', REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'm' };
    expect(errorOf(both)).toBe('REDIS_SENTINELS: cannot be used together with REDIS_URL: set one or the other');
    expect(errorOf({ JWT_SECRET: SECRET, REDIS_SENTINELS: 's1:26379' })).toMatch(/^REDIS_SENTINELS: needs REDIS_SENTINEL_NAME/);
    expect(errorOf({ JWT_SECRET: SECRET, REDIS_SENTINEL_NAME: 'm' })).toMatch(/^REDIS_SENTINEL_NAME: needs REDIS_SENTINELS/);
    expect(errorOf({ JWT_SECRET: SECRET, REDIS_SENTINELS: 's1:26379,s2', REDIS_SENTINEL_NAME: 'm' })).toBe(
      'REDIS_SENTINELS: entry 2 of 2 must be host:port (e.g. 10.0.0.5:26379)',
    );
    expect(errorOf({ JWT_SECRET: SECRET, REDIS_URL: 'http://h' })).toMatch(/^REDIS_URL: must be a URL starting with redis:\/\//);
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

  it('reads REPLAY_KEY (and REPLAY_KEY_PREVIOUS while rotating) under the secret floor, never echoing a value', () => {
    const key = 'replay-0123456789-abcdefghijklmnopq';
    const old = 'replay-9876543210-qponmlkjihgfedcba';
    expect(loadConfig({ JWT_SECRET: SECRET }).replayKeys).toEqual([]);
    expect(loadConfig({ JWT_SECRET: SECRET, REPLAY_KEY: key }).replayKeys).toEqual([key]);
    expect(loadConfig({ JWT_SECRET: SECRET, REPLAY_KEY: key, REPLAY_KEY_PREVIOUS: old }).replayKeys).toEqual([key, old]);
    expect(errorOf({ JWT_SECRET: SECRET, REPLAY_KEY: 'changeme-changeme' })).toMatch(/^REPLAY_KEY: must be at least 32/);
    expect(errorOf({ JWT_SECRET: SECRET, REPLAY_KEY: key, REPLAY_KEY_PREVIOUS: 'ab'.repeat(20) })).toMatch(
      /^REPLAY_KEY_PREVIOUS: is one piece repeated/,
    );
    expect(errorOf({ JWT_SECRET: SECRET, REPLAY_KEY_PREVIOUS: old })).toMatch(/^REPLAY_KEY_PREVIOUS: needs REPLAY_KEY/);
    expect(errorOf({ JWT_SECRET: SECRET, REPLAY_KEY: key, REPLAY_KEY_PREVIOUS: key })).toMatch(/^REPLAY_KEY_PREVIOUS: is the same/);
    expect(errorOf({ JWT_SECRET: SECRET, REPLAY_KEY: `${key}-example` })).not.toContain(key);
  });

  it('caps queue creations by the unrouted mover at UNROUTED_PROVISION_RATE_PER_SEC', () => {
    expect(loadConfig({ JWT_SECRET: SECRET }).unroutedProvisionRatePerSec).toBe(20);
    expect(loadConfig({ JWT_SECRET: SECRET, UNROUTED_PROVISION_RATE_PER_SEC: '3' }).unroutedProvisionRatePerSec).toBe(3);
    expect(errorOf({ JWT_SECRET: SECRET, UNROUTED_PROVISION_RATE_PER_SEC: '0' })).toMatch(/^UNROUTED_PROVISION_RATE_PER_SEC: must be >= 1/);
  });

  it('takes MAX_CONNECTIONS_PER_USER as given, 0 (no limit) included', () => {
    expect(loadConfig({ JWT_SECRET: SECRET, MAX_CONNECTIONS_PER_USER: '3' }).maxConnectionsPerUser).toBe(3);
    expect(loadConfig({ JWT_SECRET: SECRET, MAX_CONNECTIONS_PER_USER: '0' }).maxConnectionsPerUser).toBe(0);
  });

  it("documents every variable in README's configuration table, and the token settings in docs/PROTOCOL.md 3.2", () => {
    const readme = text('README.md');
    const table = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## Operating it'));
    const variables = [...configVariables()];
    expect(variables.length).toBeGreaterThan(40);
    for (const variable of variables) expect(table, variable).toContain(`\`${variable}\``);
    const protocol = text('docs/PROTOCOL.md');
    const authentication = protocol.slice(protocol.indexOf('### 3.2 Authentication'), protocol.indexOf('### 3.3'));
    for (const variable of variables.filter(
      (name) => name.startsWith('JWT_') || name.startsWith('ADMIN_') || name === 'METRICS_REQUIRE_TOKEN',
    ))
      expect(authentication, variable).toContain(`\`${variable}\``);
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
