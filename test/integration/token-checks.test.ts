/**
 * Token checks over a real socket (src/server/auth.ts), at hello and in refresh: an `aud` token
 * with JWT_AUDIENCE unset, an `iat` ten years ahead and an `exp` a century away (under the
 * default JWT_MAX_AGE) are closed with 4001 and the generic reason, a good token gets welcome;
 * the start-up warning names the unset JWT settings; the debug log says which check failed and
 * never holds the token; a weak JWT_SECRET stops a relay process at start, naming JWT_SECRET.
 */
import { Writable } from 'node:stream';
import jwt from 'jsonwebtoken';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RelayProcess } from '../../src/process/relay-process.js';
import { startRelay, type Relay } from '../../src/server/relay.js';
import { HttpRefusal, RawClient } from '../helpers/raw-client.js';
import { TEST_SECRET, testConfig, testEnv, token, uid } from '../helpers/relay.js';

const YEAR_S = 365 * 24 * 3600;

/** A token with exactly these claims besides `sub` (a string payload is signed as it is). */
function signed(user: string, claims: Record<string, unknown>): string {
  return jwt.sign(JSON.stringify({ sub: user, ...claims }), TEST_SECRET, { algorithm: 'HS256' });
}

const nowS = (): number => Math.floor(Date.now() / 1000);

/** Log lines of an in-process relay, parsed. */
class LogCapture {
  readonly lines: Record<string, unknown>[] = [];
  raw = '';
  readonly stream = new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      const text = chunk.toString();
      this.raw += text;
      for (const line of text.split('\n')) if (line.trim() !== '') this.lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
}

async function startCaptured(env: Record<string, string> = {}): Promise<{ relay: Relay; log: LogCapture; url: string }> {
  const log = new LogCapture();
  const relay = await startRelay(testConfig({ LOG_LEVEL: 'debug', ...env }), { logger: pino({ level: 'debug' }, log.stream) });
  return { relay, log, url: `ws://127.0.0.1:${relay.port}/v1/stream` };
}

async function helloClose(url: string, tokenValue: string): Promise<{ code: number; reason: string }> {
  const client = await RawClient.connect(url);
  client.send({ type: 'hello', token: tokenValue });
  return client.closeCode();
}

describe('token checks with the default settings (JWT_AUDIENCE and JWT_ISSUER unset, JWT_MAX_AGE 24h)', () => {
  let relay: Relay;
  let log: LogCapture;
  let url: string;
  beforeAll(async () => {
    ({ relay, log, url } = await startCaptured());
  });
  afterAll(async () => {
    await relay?.drain();
  });

  it('logs a start-up warning naming JWT_AUDIENCE and JWT_ISSUER', () => {
    const warning = log.lines.find(
      (line) => line.level === 40 && Array.isArray(line.settings) && String(line.msg).includes('JWT_AUDIENCE'),
    );
    expect(warning).toMatchObject({ settings: ['JWT_AUDIENCE', 'JWT_ISSUER'] });
    expect(String(warning?.msg)).toMatch(/^JWT_AUDIENCE and JWT_ISSUER are not set: tokens that carry an aud claim are refused/);
  });

  it('welcomes a good token', async () => {
    const client = await RawClient.connect(url);
    client.send({ type: 'hello', token: token(uid('tok')) });
    await client.next('welcome');
    client.close();
  });

  it('closes 4001 "invalid token" for a token with an aud claim', async () => {
    const user = uid('tok');
    const audToken = signed(user, { iat: nowS(), exp: nowS() + 600, aud: 'some-other-service' });
    expect(await helloClose(url, audToken)).toEqual({ code: 4001, reason: 'invalid token' });
    expect(
      log.lines.some(
        (line) => line.msg === 'token refused: detail' && line.detail === 'the token has an aud claim and JWT_AUDIENCE is not set',
      ),
    ).toBe(true);
    expect(log.raw).not.toContain(audToken);
  });

  it('closes 4001 "invalid token" for an iat 10 years ahead', async () => {
    const future = signed(uid('tok'), { iat: nowS() + 10 * YEAR_S, exp: nowS() + 10 * YEAR_S + 600 });
    expect(await helloClose(url, future)).toEqual({ code: 4001, reason: 'invalid token' });
  });

  it('closes 4001 "invalid token" for an exp a century away', async () => {
    const forever = signed(uid('tok'), { iat: nowS(), exp: nowS() + 100 * YEAR_S });
    expect(await helloClose(url, forever)).toEqual({ code: 4001, reason: 'invalid token' });
    expect(await helloClose(url, signed(uid('tok'), { exp: nowS() + 600 }))).toEqual({ code: 4001, reason: 'invalid token' });
  });

  it('applies the same checks to a refresh', async () => {
    for (const bad of [
      (user: string) => signed(user, { iat: nowS(), exp: nowS() + 100 * YEAR_S }),
      (user: string) => signed(user, { iat: nowS(), exp: nowS() + 600, aud: 'some-other-service' }),
      (user: string) => signed(user, { iat: nowS() + 10 * YEAR_S, exp: nowS() + 10 * YEAR_S + 600 }),
    ]) {
      const user = uid('tok');
      const client = await RawClient.connect(url);
      client.send({ type: 'hello', token: token(user) });
      await client.next('welcome');
      client.send({ type: 'refresh', token: token(user, 600) });
      client.send({ type: 'ping', id: 'after-good-refresh' });
      expect(await client.next('pong')).toEqual({ type: 'pong', id: 'after-good-refresh' });
      client.send({ type: 'refresh', token: bad(user) });
      expect(await client.closeCode()).toEqual({ code: 4001, reason: 'invalid token' });
    }
  });

  it('refuses the same tokens in the upgrade header (HTTP 401)', async () => {
    const audToken = signed(uid('tok'), { iat: nowS(), exp: nowS() + 600, aud: 'some-other-service' });
    const refusal = await RawClient.connect(url, { headers: { Authorization: `Bearer ${audToken}` } }).then(
      (client) => {
        client.close();
        return 0;
      },
      (error: unknown) => (error instanceof HttpRefusal ? error.status : -1),
    );
    expect(refusal).toBe(401);
  });
});

describe('token checks with JWT_AUDIENCE and JWT_ISSUER set', () => {
  it('logs no JWT warning and welcomes a token for this audience and issuer', async () => {
    const { relay, log, url } = await startCaptured({ JWT_AUDIENCE: 'inbox-relay', JWT_ISSUER: 'https://issuer.example' });
    try {
      expect(log.lines.filter((line) => line.level === 40 && String(line.msg).includes('JWT_'))).toEqual([]);
      const client = await RawClient.connect(url);
      client.send({
        type: 'hello',
        token: signed(uid('tok'), { iat: nowS(), exp: nowS() + 600, aud: 'inbox-relay', iss: 'https://issuer.example' }),
      });
      await client.next('welcome');
      client.close();
      const other = signed(uid('tok'), { iat: nowS(), exp: nowS() + 600, aud: 'billing', iss: 'https://issuer.example' });
      expect(await helloClose(url, other)).toEqual({ code: 4001, reason: 'invalid token' });
    } finally {
      await relay.drain();
    }
  });
});

describe('a weak JWT_SECRET', () => {
  it('stops a relay process at start, exit 2, with a message naming JWT_SECRET and not the value', async () => {
    const weak = 'changeme'.repeat(5);
    const started = RelayProcess.start({ env: testEnv({ JWT_SECRET: weak, LOG_LEVEL: 'info' }), readyTimeoutMs: 30_000 });
    const error = await started.then(
      async (relay) => {
        await relay.stop('SIGKILL');
        throw new Error('the relay started with a weak JWT_SECRET');
      },
      (failure: unknown) => failure as Error,
    );
    expect(error.message).toMatch(/exited with 2 while starting/);
    expect(error.message).toMatch(/configuration error: JWT_SECRET: is one piece repeated/);
    expect(error.message).not.toContain(weak);
  });
});
