/**
 * JWT key sets over a real socket (src/server/token-keys.ts): a token whose kid is in
 * JWT_KEYS_FILE gets welcome and an unknown kid 4001 `invalid token` (HTTP 401 at the upgrade);
 * a relay process rereads the file on SIGHUP (a new kid accepted, a bad file keeps the keys in
 * use, a removed kid refused for new tokens while a connection that used it stays open until its
 * exp, 4008); a JWKS served over plain HTTP on 127.0.0.1 verifies RS256 and ES256 tokens, is
 * cached, and a key added to it is picked up without a restart; and a rotation drill (add the new
 * key, switch the issuer, wait out JWT_MAX_AGE, remove the old key) under steady connects refuses
 * no one.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RelayProcess } from '../../src/process/relay-process.js';
import { startRelay, type Relay } from '../../src/server/relay.js';
import { waitUntil } from '../../src/wait-until.js';
import { ecKeyPair, KeySetFile, publicJwk, randomSecret, rsaKeyPair, signWith } from '../helpers/jwt-keys.js';
import { HttpRefusal, RawClient } from '../helpers/raw-client.js';
import { testConfig, testEnv, uid } from '../helpers/relay.js';

/** Parsed JSON log lines, from an in-process logger or a relay process's output. */
class LogLines {
  readonly lines: Record<string, unknown>[] = [];
  raw = '';

  readonly stream = new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      for (const line of chunk.toString().split('\n')) this.add(line);
      done();
    },
  });

  add(line: string): void {
    if (line.trim() === '') return;
    this.raw += `${line}\n`;
    try {
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // Not a log line (a start-up error on stderr): kept in `raw` only.
    }
  }

  withMsg(msg: string): Record<string, unknown>[] {
    return this.lines.filter((line) => line.msg === msg);
  }
}

/** What a hello with `token` gets: `welcome`, or the close code and reason. */
async function helloOutcome(url: string, token: string): Promise<string> {
  const client = await RawClient.connect(url);
  try {
    client.send({ type: 'hello', token });
    const first = await Promise.race([
      client.next('welcome').then(() => 'welcome'),
      client.closed.then(({ code, reason }) => `${code} ${reason}`),
    ]);
    return first;
  } finally {
    client.close();
  }
}

const RELOADED = 'JWT key set reloaded';
const NOT_RELOADED = 'JWT key set not reloaded; the previous keys stay in use';

/** A relay process with JWT_KEYS_FILE (no JWT_SECRET), its log lines read as they come. */
async function startRelayProcess(env: Record<string, string>): Promise<{ relay: RelayProcess; log: LogLines; url: string }> {
  const log = new LogLines();
  const relay = await RelayProcess.start({
    env: testEnv({ JWT_SECRET: undefined, LOG_LEVEL: 'info', ...env }),
    onLine: (line) => log.add(line),
  });
  return { relay, log, url: `ws://127.0.0.1:${relay.ports!.port}/v1/stream` };
}

/** Sends SIGHUP and waits for the relay's answer: the next `msg` log line (reloaded or not). */
async function sighup(relay: RelayProcess, log: LogLines, msg: string): Promise<Record<string, unknown>> {
  const before = log.withMsg(msg).length;
  process.kill(relay.pid!, 'SIGHUP');
  await waitUntil(() => log.withMsg(msg).length > before, { timeoutMs: 10_000, what: `"${msg}" after SIGHUP` });
  return log.withMsg(msg).at(-1)!;
}

describe('a key set file (in-process relay)', () => {
  const hsSecret = randomSecret();
  const rsa = rsaKeyPair();
  const file = new KeySetFile([
    { kid: 'k-hs', alg: 'HS256', secret: hsSecret },
    { kid: 'k-rs', alg: 'RS256', publicKey: rsa.publicPem },
  ]);
  const log = new LogLines();
  let relay: Relay;
  let url: string;
  beforeAll(async () => {
    relay = await startRelay(testConfig({ JWT_SECRET: undefined, JWT_KEYS_FILE: file.path, LOG_LEVEL: 'debug' }), {
      logger: pino({ level: 'debug' }, log.stream),
    });
    url = `ws://127.0.0.1:${relay.port}/v1/stream`;
  });
  afterAll(async () => {
    await relay?.drain();
    file.remove();
  });

  it('logs the kids it loaded, never the keys', () => {
    expect(log.withMsg('JWT key set loaded')).toEqual([expect.objectContaining({ file: file.path, kids: ['k-hs', 'k-rs'] })]);
    expect(log.raw).not.toContain(hsSecret);
  });

  it('welcomes tokens whose kid is in the file, HS256 and RS256', async () => {
    expect(await helloOutcome(url, signWith(uid('kr'), hsSecret, { kid: 'k-hs' }))).toBe('welcome');
    expect(await helloOutcome(url, signWith(uid('kr'), rsa.privateKey, { kid: 'k-rs' }))).toBe('welcome');
  });

  it('closes 4001 "invalid token" for an unknown kid and for no kid; the debug log names the kid, not the token', async () => {
    const unknown = signWith(uid('kr'), hsSecret, { kid: 'k-gone' });
    expect(await helloOutcome(url, unknown)).toBe('4001 invalid token');
    expect(await helloOutcome(url, signWith(uid('kr'), hsSecret))).toBe('4001 invalid token');
    expect(log.withMsg('token refused: detail')).toContainEqual(
      expect.objectContaining({ detail: 'unknown kid "k-gone": not in JWT_KEYS_FILE' }),
    );
    expect(log.raw).not.toContain(unknown);
  });

  it('checks the upgrade header the same way: 401 for an unknown kid, welcome for a known one', async () => {
    const status = await RawClient.connect(url, {
      headers: { Authorization: `Bearer ${signWith(uid('kr'), hsSecret, { kid: 'k-gone' })}` },
    }).then(
      (client) => {
        client.close();
        return 101;
      },
      (error: unknown) => (error instanceof HttpRefusal ? error.status : -1),
    );
    expect(status).toBe(401);
    const client = await RawClient.connect(url, {
      headers: { Authorization: `Bearer ${signWith(uid('kr'), rsa.privateKey, { kid: 'k-rs' })}` },
    });
    client.send({ type: 'hello' });
    await client.next('welcome');
    client.close();
  });
});

describe('SIGHUP (relay process)', () => {
  it('reloads the key file: a new kid accepted, a bad file kept out, a removed kid refused while its open connection lasts until exp', async () => {
    const secretA = randomSecret();
    const secretB = randomSecret();
    const file = new KeySetFile([{ kid: 'kid-a', alg: 'HS256', secret: secretA }]);
    const { relay, log, url } = await startRelayProcess({ JWT_KEYS_FILE: file.path, JWT_CLOCK_TOLERANCE_S: '0' });
    try {
      expect(log.withMsg('JWT key set loaded').at(-1)).toMatchObject({ kids: ['kid-a'] });
      const user = uid('kr');
      const tokenA = signWith(user, secretA, { kid: 'kid-a', expiresInSeconds: 600 });
      const tokenB = signWith(user, secretB, { kid: 'kid-b', expiresInSeconds: 600 });
      expect(await helloOutcome(url, tokenB)).toBe('4001 invalid token');

      file.write([
        { kid: 'kid-a', alg: 'HS256', secret: secretA },
        { kid: 'kid-b', alg: 'HS256', secret: secretB },
      ]);
      expect(await sighup(relay, log, RELOADED)).toMatchObject({ kids: ['kid-a', 'kid-b'] });
      expect(await helloOutcome(url, tokenB)).toBe('welcome');

      file.writeText('{"keys": [');
      expect(await sighup(relay, log, NOT_RELOADED)).toMatchObject({ level: 50, err: 'is not valid JSON', kids: ['kid-a', 'kid-b'] });
      expect([await helloOutcome(url, tokenA), await helloOutcome(url, tokenB)]).toEqual(['welcome', 'welcome']);

      // A connection opened with kid-a, whose token expires in 20 s.
      const open = await RawClient.connect(url);
      open.send({ type: 'hello', token: signWith(uid('kr'), secretA, { kid: 'kid-a', expiresInSeconds: 20 }) });
      await open.next('welcome');

      file.write([{ kid: 'kid-b', alg: 'HS256', secret: secretB }]);
      expect(await sighup(relay, log, RELOADED)).toMatchObject({ kids: ['kid-b'] });
      expect(await helloOutcome(url, tokenA)).toBe('4001 invalid token');
      expect(await helloOutcome(url, tokenB)).toBe('welcome');
      // Removing its key does not touch the open connection: it answers, and closes at exp.
      open.send({ type: 'ping', id: 'after-removal' });
      expect(await open.next('pong')).toEqual({ type: 'pong', id: 'after-removal' });
      expect(await open.closeCode(30_000)).toEqual({ code: 4008, reason: 'token expired' });

      expect(log.raw).not.toContain(secretA);
      expect(log.raw).not.toContain(secretB);
    } finally {
      await relay.stop();
      file.remove();
    }
  });

  it('refuses to start with a JWKS URL over plain http to another host, naming JWT_JWKS_URL', async () => {
    const error = await RelayProcess.start({
      env: testEnv({ JWT_SECRET: undefined, JWT_JWKS_URL: 'http://issuer.example/.well-known/jwks.json', LOG_LEVEL: 'info' }),
    }).then(
      async (relay) => {
        await relay.stop('SIGKILL');
        throw new Error('the relay started with an http JWKS URL');
      },
      (failure: unknown) => failure as Error,
    );
    expect(error.message).toMatch(/exited with 2 while starting/);
    expect(error.message).toMatch(/configuration error: JWT_JWKS_URL: must be an https:\/\/ URL/);
  });
});

describe('a JWKS over plain HTTP on 127.0.0.1', () => {
  const rsa = rsaKeyPair();
  const ec = ecKeyPair();
  const served: { keys: Record<string, unknown>[] } = { keys: [publicJwk(rsa, 'rsa-1', 'RS256')] };
  let requests = 0;
  let server: Server;
  const log = new LogLines();
  let relay: Relay;
  let url: string;
  beforeAll(async () => {
    server = createServer((request, response) => {
      requests += 1;
      if (request.url !== '/jwks.json') return response.writeHead(404).end();
      response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(served));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
    relay = await startRelay(testConfig({ JWT_SECRET: undefined, JWT_JWKS_URL: jwksUrl, LOG_LEVEL: 'debug' }), {
      logger: pino({ level: 'debug' }, log.stream),
    });
    url = `ws://127.0.0.1:${relay.port}/v1/stream`;
  });
  afterAll(async () => {
    await relay?.drain();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('verifies RS256 tokens with the JWKS key of their kid, fetched once and then cached', async () => {
    expect(await helloOutcome(url, signWith(uid('kr'), rsa.privateKey, { kid: 'rsa-1' }))).toBe('welcome');
    expect(requests).toBe(1);
    expect(await helloOutcome(url, signWith(uid('kr'), rsa.privateKey, { kid: 'rsa-1' }))).toBe('welcome');
    expect(requests).toBe(1);
    // The public key's text as an HMAC secret: refused, and the cached key serves the refusal.
    const confused = signWith(uid('kr'), rsa.publicPem, { kid: 'rsa-1', algorithm: 'HS256' });
    expect(await helloOutcome(url, confused)).toBe('4001 invalid token');
    expect(requests).toBe(1);
  });

  it('picks up a key added to the JWKS without a restart, and refuses a kid it does not list', async () => {
    const token = signWith(uid('kr'), ec.privateKey, { kid: 'ec-2', algorithm: 'ES256' });
    const before = requests;
    served.keys.push(publicJwk(ec, 'ec-2', 'ES256'));
    expect(await helloOutcome(url, token)).toBe('welcome');
    expect(requests).toBe(before + 1);
    expect(log.withMsg('JWT key picked up from the JWKS')).toContainEqual(expect.objectContaining({ kid: 'ec-2', algorithms: ['ES256'] }));

    expect(await helloOutcome(url, signWith(uid('kr'), rsa.privateKey, { kid: 'rsa-unknown' }))).toBe('4001 invalid token');
    expect(requests).toBe(before + 2);
    expect(log.withMsg('token refused: detail')).toContainEqual(
      expect.objectContaining({ detail: 'unknown kid "rsa-unknown": the JWKS does not list it' }),
    );
  });
});

describe('a rotation drill (relay process)', () => {
  it('refuses no connect: add the new key, switch the issuer, wait out JWT_MAX_AGE, remove the old key', async () => {
    const MAX_AGE_S = 6;
    const TOLERANCE_S = 1;
    const old = { kid: 'drill-old', secret: randomSecret() };
    const next = { kid: 'drill-new', secret: randomSecret() };
    const file = new KeySetFile([{ kid: old.kid, alg: 'HS256', secret: old.secret }]);
    const { relay, log, url } = await startRelayProcess({
      JWT_KEYS_FILE: file.path,
      JWT_MAX_AGE: `${MAX_AGE_S}s`,
      JWT_CLOCK_TOLERANCE_S: String(TOLERANCE_S),
    });
    // The issuer signs with its current key; clients keep a token until a second before its exp,
    // as the SDK does, so old tokens stay in circulation after the switch.
    let issuing = old;
    const phase = { name: 'before', switchedAt: 0 };
    const connects: { kid: string; phase: string; outcome: string }[] = [];
    let running = true;
    const worker = async (): Promise<void> => {
      const user = uid('drill');
      let held: { kid: string; token: string; exp: number } | undefined;
      while (running) {
        if (!held || Date.now() >= held.exp - 1_000) {
          held = {
            kid: issuing.kid,
            token: signWith(user, issuing.secret, { kid: issuing.kid, expiresInSeconds: MAX_AGE_S }),
            exp: Date.now() + MAX_AGE_S * 1000,
          };
        }
        connects.push({ kid: held.kid, phase: phase.name, outcome: await helloOutcome(url, held.token) });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    const workers = [worker(), worker(), worker()];
    const count = (filter: (connect: (typeof connects)[number]) => boolean): number => connects.filter(filter).length;
    try {
      await waitUntil(() => count((c) => c.phase === 'before') >= 5, { timeoutMs: 30_000, what: 'connects before the rotation' });

      // 1. The new key joins the set: both kids are valid.
      file.write([
        { kid: old.kid, alg: 'HS256', secret: old.secret },
        { kid: next.kid, alg: 'HS256', secret: next.secret },
      ]);
      expect(await sighup(relay, log, RELOADED)).toMatchObject({ kids: [old.kid, next.kid] });
      phase.name = 'overlap';
      // 2. The issuer switches to the new kid.
      issuing = next;
      phase.switchedAt = Date.now();
      // 3. Every token signed with the old key has expired: JWT_MAX_AGE plus the tolerance after the switch.
      const oldTokensGoneAt = phase.switchedAt + (MAX_AGE_S + TOLERANCE_S) * 1000;
      await waitUntil(() => Date.now() > oldTokensGoneAt, { timeoutMs: (MAX_AGE_S + TOLERANCE_S + 5) * 1000 });
      // 4. The old key is removed.
      file.write([{ kid: next.kid, alg: 'HS256', secret: next.secret }]);
      expect(await sighup(relay, log, RELOADED)).toMatchObject({ kids: [next.kid] });
      phase.name = 'after';
      await waitUntil(() => count((c) => c.phase === 'after') >= 10, { timeoutMs: 30_000, what: 'connects after the old key was removed' });
    } finally {
      running = false;
      await Promise.all(workers);
      await relay.stop();
      file.remove();
    }
    expect(connects.filter((c) => c.outcome !== 'welcome')).toEqual([]);
    // Old tokens still in circulation during the overlap were accepted, and new ones too.
    expect(count((c) => c.phase === 'overlap' && c.kid === old.kid)).toBeGreaterThan(0);
    expect(count((c) => c.phase === 'overlap' && c.kid === next.kid)).toBeGreaterThan(0);
    expect(count((c) => c.phase === 'after' && c.kid === old.kid)).toBe(0);
  });
});
