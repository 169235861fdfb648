/**
 * What a client can do to the relay before and during the upgrade, over real sockets against an
 * in-process relay: sockets that never complete an upgrade request are closed at the deadline
 * (UPGRADE_TIMEOUT_MS) and capped in number (MAX_PENDING_UPGRADES); a refused upgrade's socket is
 * closed even if the client keeps its side open; an address out of failed authentications
 * (AUTH_FAILURE_RATE_PER_ADDRESS) is refused before any token is verified, successes not counted;
 * browser origins are refused unless allowed; and reserved user ids are refused like any invalid id.
 */
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/server/auth.js';
import { waitUntil } from '../../src/wait-until.js';
import { HttpRefusal, RawClient } from '../helpers/raw-client.js';
import { TEST_SECRET, startTestRelay, testConfig, token, uid, type TestRelay } from '../helpers/relay.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function relayWith(env: Record<string, string>): Promise<TestRelay> {
  const relay = await startTestRelay(testConfig(env));
  cleanups.push(() => relay.stop());
  return relay;
}

/** A plain TCP socket to the relay that records what it receives and when it is closed. */
interface RawSocket {
  socket: net.Socket;
  received(): string;
  /** Resolves once the socket closed. */
  closed: Promise<void>;
}

async function rawSocket(relay: TestRelay, options: { allowHalfOpen?: boolean } = {}): Promise<RawSocket> {
  const socket = net.connect({ port: relay.relay.port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen ?? false });
  socket.on('error', () => undefined);
  cleanups.push(() => {
    socket.destroy();
  });
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  // Not events.once: it would reject on the socket's errors, and a closed socket's writes fail.
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await once(socket, 'connect');
  return { socket, received: () => received, closed };
}

/** Resolves once `raw` closed; fails the test if it is still open after `timeoutMs`. */
async function closedWithin(raw: RawSocket, timeoutMs: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still open after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([raw.closed, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Counts the `refused` events of a relay by reason. */
function refusals(relay: TestRelay): Map<string, number> {
  const counts = new Map<string, number>();
  relay.relay.events.on('refused', (reason) => counts.set(reason, (counts.get(reason) ?? 0) + 1));
  return counts;
}

const UPGRADE_REQUEST = [
  'GET /v1/stream HTTP/1.1',
  'Host: 127.0.0.1',
  'Upgrade: websocket',
  'Connection: Upgrade',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
  'Sec-WebSocket-Version: 13',
  'Sec-WebSocket-Protocol: inbox-relay.v1',
];

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

describe('sockets before the upgrade', () => {
  it('closes idle, one-byte and trickling sockets with HTTP 408 at UPGRADE_TIMEOUT_MS, and leaves upgraded ones alone', async () => {
    const relay = await relayWith({ UPGRADE_TIMEOUT_MS: '300' });
    const refused = refusals(relay);
    const upgraded = await RawClient.connect(relay.url);
    cleanups.push(() => upgraded.terminate());
    const idle = await rawSocket(relay);
    const oneByte = await rawSocket(relay);
    oneByte.socket.write('G');
    // A header line that never ends, a byte at a time: the deadline counts from the connection,
    // not from the last byte.
    const trickling = await rawSocket(relay);
    trickling.socket.write('GET /v1/stream HTTP/1.1\r\nX-Slow: ');
    const trickle = setInterval(() => trickling.socket.writable && trickling.socket.write('a'), 20);
    cleanups.push(() => clearInterval(trickle));
    for (const [what, raw] of Object.entries({ idle, oneByte, trickling })) {
      await closedWithin(raw, 10_000, what);
      expect(raw.received(), what).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    }
    expect(refused.get('upgrade-timeout')).toBe(3);
    expect(relay.relay.pendingUpgradeCount).toBe(0);
    // The WebSocket opened before them is older than the deadline and still served.
    const user = uid('deadline');
    upgraded.send({ type: 'hello', token: token(user) });
    expect((await upgraded.next('welcome')).user).toBe(user);
  });

  it('closes the socket past MAX_PENDING_UPGRADES at once, and takes new ones as pending sockets leave', async () => {
    const relay = await relayWith({ MAX_PENDING_UPGRADES: '3', UPGRADE_TIMEOUT_MS: '60000' });
    const refused = refusals(relay);
    const pending = [await rawSocket(relay), await rawSocket(relay)];
    const half = await rawSocket(relay);
    half.socket.write(UPGRADE_REQUEST.slice(0, 3).join('\r\n'));
    await waitUntil(() => relay.relay.pendingUpgradeCount === 3, { timeoutMs: 10_000, what: '3 pending upgrades' });

    const over = await rawSocket(relay);
    await closedWithin(over, 10_000, 'the socket past the cap');
    expect(over.received()).toBe('');
    expect(refused.get('pending-upgrades')).toBe(1);
    expect(relay.relay.pendingUpgradeCount).toBe(3);

    // A pending socket that completes its upgrade request leaves the count.
    half.socket.write(`\r\n${UPGRADE_REQUEST.slice(3).join('\r\n')}\r\n\r\n`);
    await waitUntil(() => half.received().includes('\r\n\r\n'), { timeoutMs: 10_000, what: 'the upgrade response' });
    expect(half.received()).toMatch(/^HTTP\/1\.1 101 /);
    expect(relay.relay.pendingUpgradeCount).toBe(2);
    // So does one that closes; then a client upgrades and is served as usual.
    pending[0]!.socket.destroy();
    await waitUntil(() => relay.relay.pendingUpgradeCount === 1, { timeoutMs: 10_000, what: '1 pending upgrade' });
    const user = uid('pending');
    expect(await helloOutcome(relay.url, token(user))).toEqual({ user });
    expect(refused.get('pending-upgrades')).toBe(1);
  });

  it('closes the socket of a refused upgrade and of a plain HTTP request even if the client keeps its side open', async () => {
    const relay = await relayWith({});
    const requests = {
      'wrong path': [...UPGRADE_REQUEST.map((line) => line.replace('/v1/stream', '/nope')), '', ''].join('\r\n'),
      'no subprotocol': [...UPGRADE_REQUEST.filter((line) => !line.startsWith('Sec-WebSocket-Protocol')), '', ''].join('\r\n'),
      'plain HTTP': 'GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    };
    for (const [what, request] of Object.entries(requests)) {
      const raw = await rawSocket(relay, { allowHalfOpen: true });
      raw.socket.write(request);
      await once(raw.socket, 'end');
      // The relay closed its side; a relay that only half-closed would take these bytes forever.
      const poke = setInterval(() => raw.socket.writable && raw.socket.write('x'), 20);
      try {
        await closedWithin(raw, 10_000, what);
      } finally {
        clearInterval(poke);
      }
      expect(raw.received(), what).toMatch(/^HTTP\/1\.1 4(04|00|26) /);
    }
    expect(relay.relay.pendingUpgradeCount).toBe(0);
  });
});

describe('failed authentications per address', () => {
  /** The refusal of an upgrade that must be refused: its status and Retry-After header. */
  async function refusedWith(url: string, options: Parameters<typeof RawClient.connect>[1] = {}): Promise<HttpRefusal> {
    const refusal = await RawClient.connect(url, options).then(
      (client) => {
        client.terminate();
        throw new Error('the upgrade was accepted');
      },
      (error: unknown) => error,
    );
    if (!(refusal instanceof HttpRefusal)) throw refusal;
    return refusal;
  }

  it('refuses an address after AUTH_FAILURE_RATE_PER_ADDRESS failures, unverified, and does not count successes', async () => {
    const relay = await relayWith({ AUTH_FAILURE_RATE_PER_ADDRESS: '3' });
    const refused = refusals(relay);
    const good = () => helloOutcome(relay.url, token(uid('good')));
    for (let i = 0; i < 5; i += 1) expect(await good()).toMatchObject({ user: expect.any(String) });
    // Three failures of three kinds, with successes between them.
    expect(await helloOutcome(relay.url, 'not-a-token')).toEqual({ code: 4001 });
    expect(await good()).toMatchObject({ user: expect.any(String) });
    expect(await upgradeStatus(relay.url, { headers: { Authorization: `Bearer ${token(uid(), -3600)}` } })).toBe(401);
    expect(await good()).toMatchObject({ user: expect.any(String) });
    // Open before the last failure, its hello comes after it.
    const early = await RawClient.connect(relay.url);
    cleanups.push(() => early.terminate());
    expect(await helloOutcome(relay.url, signDevToken('__proto__', TEST_SECRET))).toEqual({ code: 4003 });
    expect(refused.get('auth-failures')).toBeUndefined();

    // Out of failures: every upgrade from 127.0.0.1 is refused with 429 before any token is
    // verified, a valid header token included; a hello on a connection opened before gets 1013.
    const plain = await refusedWith(relay.url);
    expect(plain.status).toBe(429);
    expect(Number(plain.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const withHeader = await refusedWith(relay.url, { headers: { Authorization: `Bearer ${token(uid('good'))}` } });
    expect(withHeader.status).toBe(429);
    early.send({ type: 'hello', token: token(uid('good')) });
    const closed = await early.closeCode();
    expect(closed.code).toBe(1013);
    expect(closed.reason).toMatch(/^retry-after=\d+ auth-failures$/);
    expect(refused.get('auth-failures')).toBe(3);
  });

  it('counts nothing with AUTH_FAILURE_RATE_PER_ADDRESS=0', async () => {
    const relay = await relayWith({ AUTH_FAILURE_RATE_PER_ADDRESS: '0' });
    for (let i = 0; i < 10; i += 1) expect(await helloOutcome(relay.url, 'not-a-token')).toEqual({ code: 4001 });
    const user = uid('off');
    expect(await helloOutcome(relay.url, token(user))).toEqual({ user });
  });
});

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
