/**
 * What a client can do to the relay before and during the upgrade, over real sockets against an
 * in-process relay: browser origins are refused unless allowed, and reserved user ids are refused
 * like any invalid id.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HttpRefusal, RawClient } from '../helpers/raw-client.js';
import { startTestRelay, testConfig, token, type TestRelay, uid } from '../helpers/relay.js';
import { signDevToken } from '../../src/server/auth.js';
import { TEST_SECRET } from '../helpers/relay.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function relayWith(env: Record<string, string>): Promise<TestRelay> {
  const relay = await startTestRelay(testConfig(env));
  cleanups.push(() => relay.stop());
  return relay;
}

/** The HTTP status an upgrade gets: 101 when it is accepted, else the refusal's status. */
async function upgradeStatus(url: string, options: Parameters<typeof RawClient.connect>[1] = {}): Promise<number> {
  try {
    const client = await RawClient.connect(url, options);
    client.terminate();
    return 101;
  } catch (error) {
    if (error instanceof HttpRefusal) return error.status;
    throw error;
  }
}

/** Opens a connection, sends a hello with `jwt` and resolves with the welcome's user or the close code. */
async function helloOutcome(url: string, jwt: string): Promise<{ user: string } | { code: number }> {
  const client = await RawClient.connect(url);
  cleanups.push(() => client.terminate());
  client.send({ type: 'hello', token: jwt });
  const outcome = await Promise.race([client.next('welcome').then((welcome) => ({ user: welcome.user })), client.closed]);
  return 'user' in outcome ? outcome : { code: outcome.code };
}

describe('browser origins', () => {
  it('refuses an upgrade from a browser origin with HTTP 403 by default and accepts one without Origin', async () => {
    const relay = await relayWith({});
    expect(await upgradeStatus(relay.url, { origin: 'https://evil.example' })).toBe(403);
    expect(await upgradeStatus(relay.url, { origin: 'null' })).toBe(403);
    expect(await upgradeStatus(relay.url)).toBe(101);
    const user = uid('origin');
    expect(await helloOutcome(relay.url, token(user))).toEqual({ user });
  });

  it('accepts only the listed origins when ALLOWED_ORIGINS lists some, and clients without Origin still', async () => {
    const relay = await relayWith({ ALLOWED_ORIGINS: 'https://app.example, http://127.0.0.1:3000' });
    expect(await upgradeStatus(relay.url, { origin: 'https://app.example' })).toBe(101);
    expect(await upgradeStatus(relay.url, { origin: 'http://127.0.0.1:3000' })).toBe(101);
    expect(await upgradeStatus(relay.url, { origin: 'https://app.example.evil.example' })).toBe(403);
    expect(await upgradeStatus(relay.url, { origin: 'http://app.example' })).toBe(403);
    expect(await upgradeStatus(relay.url)).toBe(101);
  });

  it('accepts every origin with ALLOWED_ORIGINS=*', async () => {
    const relay = await relayWith({ ALLOWED_ORIGINS: '*' });
    expect(await upgradeStatus(relay.url, { origin: 'https://anything.example' })).toBe(101);
    expect(await upgradeStatus(relay.url, { origin: 'null' })).toBe(101);
    expect(await upgradeStatus(relay.url)).toBe(101);
  });
});

describe('reserved user ids', () => {
  it('refuses a token for a special JavaScript key or a shared queue name like any invalid id (403, 4003)', async () => {
    const relay = await relayWith({});
    for (const sub of ['__proto__', 'constructor', 'prototype', 'dead']) {
      const jwt = signDevToken(sub, TEST_SECRET);
      expect(await upgradeStatus(relay.url, { headers: { Authorization: `Bearer ${jwt}` } }), sub).toBe(403);
      expect(await helloOutcome(relay.url, jwt), sub).toEqual({ code: 4003 });
    }
    const user = uid('ok');
    expect(await helloOutcome(relay.url, token(user))).toEqual({ user });
  });
});
