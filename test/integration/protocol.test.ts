/**
 * The wire contract, frame by frame: handshake, auth and every kind of bad input get the close
 * code or error frame docs/PROTOCOL.md names, the relay stays up, and other users are unaffected.
 */
import jwt from 'jsonwebtoken';
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Producer } from '../../src/amqp/producer.js';
import { HttpRefusal, RawClient, msgs } from '../helpers/raw-client.js';
import { TEST_SECRET, startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';

async function helloed(relay: TestRelay, user: string, extra: Record<string, unknown> = {}): Promise<RawClient> {
  const client = await RawClient.connect(relay.url);
  client.send({ type: 'hello', token: token(user), ...extra });
  await client.next('welcome');
  return client;
}

async function refusal(promise: Promise<RawClient>): Promise<number> {
  try {
    const client = await promise;
    client.terminate();
    return 101;
  } catch (error) {
    if (error instanceof HttpRefusal) return error.status;
    throw error;
  }
}

describe('wire protocol', () => {
  let relay: TestRelay;
  let producer: Producer;
  beforeAll(async () => {
    // No clock tolerance: these tests expect exp to act at its exact instant (the tolerance is
    // tested in token-checks.test.ts).
    relay = await startTestRelay(
      testConfig({ HELLO_TIMEOUT_MS: '500', ALLOWED_ORIGINS: '', WINDOW_DEFAULT: '5', WINDOW_MAX: '8', JWT_CLOCK_TOLERANCE_S: '0' }),
    );
    producer = testProducer(relay.config);
  });
  afterAll(async () => {
    await producer.close();
    await relay.stop();
  });

  describe('handshake', () => {
    it('welcomes a new client with its position and the agreed window', async () => {
      const user = uid('hs');
      const client = await RawClient.connect(relay.url);
      expect(client.ws.protocol).toBe('inbox-relay.v1');
      client.send({ type: 'hello', token: token(user), window: 1000 });
      const welcome = await client.next('welcome');
      expect(welcome).toMatchObject({ user, lastSeq: 0, resumed: false, recovered: true, window: 8 });
      expect(welcome.epoch.length).toBeGreaterThan(0);
      expect(welcome.heartbeatMs).toBeGreaterThan(0);
      client.close();
    });

    it('accepts the token from the Authorization header of the upgrade', async () => {
      const user = uid('hdr');
      const client = await RawClient.connect(relay.url, { headers: { Authorization: `Bearer ${token(user)}` } });
      client.send({ type: 'hello' });
      expect((await client.next('welcome')).user).toBe(user);
      client.close();
    });

    it('refuses a bad Authorization header with HTTP 401 before upgrading', async () => {
      expect(await refusal(RawClient.connect(relay.url, { headers: { Authorization: 'Bearer not-a-jwt' } }))).toBe(401);
      expect(await refusal(RawClient.connect(relay.url, { headers: { Authorization: `Bearer ${token(uid(), -10)}` } }))).toBe(401);
    });

    it('refuses a token whose subject is not a valid user id with HTTP 403', async () => {
      const bad = jwt.sign({ sub: 'no spaces/allowed' }, TEST_SECRET, { algorithm: 'HS256', expiresIn: 60 });
      expect(await refusal(RawClient.connect(relay.url, { headers: { Authorization: `Bearer ${bad}` } }))).toBe(403);
    });

    it('refuses a wrong path (404) and a missing subprotocol (400)', async () => {
      expect(await refusal(RawClient.connect(relay.url.replace('/v1/stream', '/v2/stream')))).toBe(404);
      expect(await refusal(RawClient.connect(relay.url, { protocols: ['chat'] }))).toBe(400);
    });

    it('closes with 4001 when no hello arrives in time', async () => {
      const client = await RawClient.connect(relay.url);
      expect((await client.closeCode()).code).toBe(4001);
    });

    it('closes with 4001 when hello has no token and the upgrade had none', async () => {
      const client = await RawClient.connect(relay.url);
      client.send({ type: 'hello' });
      expect((await client.closeCode()).code).toBe(4001);
    });

    it('closes with 4001 for alg none, another key, another algorithm and no exp', async () => {
      const user = uid('alg');
      const none = jwt.sign({ sub: user }, '', { algorithm: 'none' });
      const otherKey = jwt.sign({ sub: user }, 'another-secret-0123456789-abcdefghijklmnop', { algorithm: 'HS256' });
      const otherAlg = jwt.sign({ sub: user }, TEST_SECRET, { algorithm: 'HS512' });
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const rsa = jwt.sign({ sub: user }, privateKey, { algorithm: 'RS256' });
      const noExp = jwt.sign({ sub: user }, TEST_SECRET, { algorithm: 'HS256' });
      for (const bad of [none, otherKey, otherAlg, rsa, noExp]) {
        const client = await RawClient.connect(relay.url);
        client.send({ type: 'hello', token: bad });
        expect((await client.closeCode()).code).toBe(4001);
      }
    });

    it('closes with 4008 for an expired token and 4003 for an invalid user id', async () => {
      const expired = await RawClient.connect(relay.url);
      expired.send({ type: 'hello', token: token(uid(), -10) });
      expect((await expired.closeCode()).code).toBe(4008);
      for (const sub of ['a'.repeat(129), 'dead', 'unrouted']) {
        const badUser = await RawClient.connect(relay.url);
        badUser.send({ type: 'hello', token: jwt.sign({ sub }, TEST_SECRET, { algorithm: 'HS256' }) });
        expect((await badUser.closeCode()).code, sub).toBe(4003);
      }
    });
  });

  describe('bad frames', () => {
    it('closes with 1008 for malformed JSON, an unknown frame type and a frame before hello', async () => {
      for (const bad of ['{not json', JSON.stringify({ type: 'subscribe' }), JSON.stringify({ type: 'ack', seq: 1 })]) {
        const client = await RawClient.connect(relay.url);
        client.send(bad);
        expect((await client.closeCode()).code).toBe(1008);
      }
    });

    it('closes with 1008 for a frame that breaks the schema after hello', async () => {
      const client = await helloed(relay, uid('schema'));
      client.send({ type: 'ack', seq: 'one' });
      expect((await client.closeCode()).code).toBe(1008);
    });

    it('closes with 1009 for a frame over maxPayload', async () => {
      const client = await RawClient.connect(relay.url);
      client.send({ type: 'hello', token: 'x'.repeat(70 * 1024) });
      expect((await client.closeCode()).code).toBe(1009);
    });

    it('answers an ack of a seq never sent with an error frame and keeps the connection', async () => {
      const client = await helloed(relay, uid('unk'));
      client.send({ type: 'ack', seq: 42 });
      expect(await client.next('error')).toMatchObject({ code: 'RELAY_ERR_UNKNOWN_SEQ', seq: 42 });
      client.send({ type: 'ping', id: 7 });
      expect(await client.next('pong')).toEqual({ type: 'pong', id: 7 });
      client.close();
    });

    it('answers a duplicate hello with an error frame and keeps the connection', async () => {
      const user = uid('dup');
      const client = await helloed(relay, user);
      client.send({ type: 'hello', token: token(user) });
      expect(await client.next('error')).toMatchObject({ code: 'RELAY_ERR_DUPLICATE_HELLO' });
      client.send({ type: 'ping' });
      expect(await client.next('pong')).toEqual({ type: 'pong' });
      client.close();
    });

    it('keeps delivering to other users while one misbehaves', async () => {
      const good = uid('good');
      const client = await helloed(relay, good);
      for (let i = 0; i < 20; i += 1) {
        const bad = await RawClient.connect(relay.url);
        bad.send(i % 2 === 0 ? '{oops' : JSON.stringify({ type: 'hello', token: 'bad' }));
      }
      await producer.publish(good, { ok: true });
      expect((await client.next('msg')).data).toEqual({ ok: true });
      client.close();
    });
  });

  describe('delivery', () => {
    it('never has more than the window unacked, and acks open it again', async () => {
      const user = uid('win');
      for (let n = 1; n <= 12; n += 1) await producer.publish(user, { n });
      const client = await helloed(relay, user, { window: 3 });
      await client.next('msg');
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(msgs(client.frames).map((m) => m.seq)).toEqual([1, 2, 3]);
      client.send({ type: 'ack', seq: 2 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(msgs(client.frames).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
      client.close();
    });

    it('carries id, ts, contentType and data; non-JSON bodies as base64', async () => {
      const user = uid('ct');
      const receipt = await producer.publish(user, { hello: 'world' }, { timestamp: 1_700_000_000_000 });
      await producer.publish(user, Buffer.from([0, 1, 2, 255]), { contentType: 'application/octet-stream' });
      const client = await helloed(relay, user);
      const first = await client.next('msg');
      expect(first).toEqual({
        type: 'msg',
        seq: 1,
        id: receipt.messageId,
        ts: 1_700_000_000_000,
        redelivered: false,
        contentType: 'application/json',
        data: { hello: 'world' },
      });
      const second = await client.next('msg');
      expect(second.contentType).toBe('application/octet-stream');
      expect(Buffer.from(second.data as string, 'base64')).toEqual(Buffer.from([0, 1, 2, 255]));
      client.close();
    });

    it('gives a message published twice with the same messageId one seq', async () => {
      const user = uid('idem');
      await producer.publish(user, { n: 1 }, { messageId: 'same' });
      await producer.publish(user, { n: 1 }, { messageId: 'same' });
      await producer.publish(user, { n: 2 }, { messageId: 'other' });
      const client = await helloed(relay, user);
      const first = await client.next('msg');
      client.send({ type: 'ack', seq: first.seq });
      const second = await client.next('msg');
      expect([first.seq, first.id, second.seq, second.id]).toEqual([1, 'same', 2, 'other']);
      client.close();
    });

    it('rewinds on nack with requeue and resends in order, marked redelivered', async () => {
      const user = uid('nack');
      for (let n = 1; n <= 4; n += 1) await producer.publish(user, { n });
      const client = await helloed(relay, user);
      for (let i = 0; i < 4; i += 1) await client.next('msg');
      client.send({ type: 'nack', seq: 2, requeue: true });
      const again = [await client.next('msg'), await client.next('msg'), await client.next('msg')];
      expect(again.map((m) => [m.seq, m.redelivered])).toEqual([
        [2, true],
        [3, true],
        [4, true],
      ]);
      client.close();
    });

    it('answers a requeue nack past the limit of a seq another connection processed, and goes on after it', async () => {
      const user = uid('nackdone');
      await producer.publish(user, { n: 1 });
      await producer.publish(user, { n: 2 });
      const phone = await helloed(relay, user);
      const laptop = await helloed(relay, user);
      for (const client of [phone, laptop]) expect([(await client.next('msg')).seq, (await client.next('msg')).seq]).toEqual([1, 2]);
      for (let nack = 1; nack <= relay.config.queueDeliveryLimit; nack += 1) {
        laptop.send({ type: 'nack', seq: 1, requeue: true });
        expect([(await laptop.next('msg')).seq, (await laptop.next('msg')).seq]).toEqual([1, 2]);
      }
      // The phone processed both; its pong proves the relay took the ack before the last nack.
      phone.send({ type: 'ack', seq: 2 });
      phone.send({ type: 'ping', id: 'acked' });
      await phone.next('pong');
      laptop.send({ type: 'nack', seq: 1, requeue: true });
      const answer = await laptop.next('error');
      expect(answer).toMatchObject({ code: 'RELAY_ERR_NACK_LIMIT', seq: 1 });
      expect(answer.message).toContain('already processed');
      // What followed 1 comes again (the client dropped it when it asked for 1 again).
      expect(await laptop.next('msg')).toMatchObject({ seq: 2, redelivered: true });
      phone.close();
      laptop.close();
    });

    it('dead-letters a message nacked without requeue and goes on after it', async () => {
      const user = uid('dlx');
      for (let n = 1; n <= 3; n += 1) await producer.publish(user, { n });
      const client = await helloed(relay, user);
      for (let i = 0; i < 3; i += 1) await client.next('msg');
      client.send({ type: 'nack', seq: 2, requeue: false });
      client.send({ type: 'ack', seq: 3 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      client.close();
      await client.closed;
      // Nothing is left for the user, and nothing comes again.
      const next = await helloed(relay, user);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(msgs(next.frames)).toEqual([]);
      expect(next.frames[0]).toMatchObject({ type: 'welcome', lastSeq: 3 });
      next.close();
    });
  });

  describe('resume', () => {
    it('continues after the resumed position and treats earlier seqs as acked', async () => {
      const user = uid('res');
      for (let n = 1; n <= 6; n += 1) await producer.publish(user, { n });
      const first = await helloed(relay, user);
      const welcome = first.frames[0] as { epoch: string };
      for (let i = 0; i < 5; i += 1) await first.next('msg');
      first.terminate();
      await first.closed;
      const second = await helloed(relay, user, { resume: { epoch: welcome.epoch, lastSeq: 3 } });
      expect(second.frames[0]).toMatchObject({ type: 'welcome', resumed: true, recovered: true, lastSeq: 3 });
      const again = [await second.next('msg'), await second.next('msg'), await second.next('msg')];
      // 4 and 5 were sent before: they must say so. (6 never reached a client, but RabbitMQ had
      // handed it to the relay, so it may be flagged too: the flag errs on the safe side.)
      expect(again.map((m) => m.seq)).toEqual([4, 5, 6]);
      expect(again.slice(0, 2).map((m) => m.redelivered)).toEqual([true, true]);
      second.close();
    });

    it('sends reset then welcome when the epoch is unknown', async () => {
      const user = uid('ep');
      const client = await RawClient.connect(relay.url);
      client.send({ type: 'hello', token: token(user), resume: { epoch: 'gone', lastSeq: 17 } });
      const reset = await client.next('reset');
      const welcome = await client.next('welcome');
      expect(client.frames.map((f) => f.type)).toEqual(['reset', 'welcome']);
      expect(reset).toMatchObject({ epoch: welcome.epoch, lastSeq: 0 });
      expect(welcome).toMatchObject({ resumed: false, recovered: false, lastSeq: 0 });
      client.close();
    });

    it('takes a resume position ahead of the stream as a store that lost writes: error, reset to a new epoch, welcome', async () => {
      const user = uid('ahead');
      const first = await helloed(relay, user);
      const { epoch } = first.frames[0] as { epoch: string };
      first.close();
      await first.closed;
      const client = await RawClient.connect(relay.url);
      client.send({ type: 'hello', token: token(user), resume: { epoch, lastSeq: 99 } });
      const welcome = await client.next('welcome');
      expect(client.frames.map((f) => f.type)).toEqual(['reset', 'error', 'welcome']);
      expect(client.frames[0]).toMatchObject({ type: 'reset', reason: 'epoch-unknown', lastSeq: 0 });
      expect(client.frames[1]).toMatchObject({ code: 'RELAY_ERR_RESUME_AHEAD' });
      expect(welcome).toMatchObject({ recovered: false, resumed: false, lastSeq: 0 });
      expect(welcome.epoch).not.toBe(epoch);
      expect((client.frames[0] as { epoch: string }).epoch).toBe(welcome.epoch);
      client.close();
    });

    it('gives every connection of a user every message; a late one catches up from history', async () => {
      const user = uid('multi');
      const a = await helloed(relay, user);
      const b = await helloed(relay, user);
      for (let n = 1; n <= 4; n += 1) await producer.publish(user, { n });
      const fromA = [];
      for (let i = 0; i < 4; i += 1) fromA.push(await a.next('msg'));
      a.send({ type: 'ack', seq: 4 });
      const fromB = [];
      for (let i = 0; i < 4; i += 1) fromB.push(await b.next('msg'));
      expect(fromA.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
      expect(fromB.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
      // A third device joins later and asks for everything from the start: served from history.
      const { epoch } = a.frames[0] as { epoch: string };
      const c = await helloed(relay, user, { resume: { epoch, lastSeq: 0 } });
      const fromC = [];
      for (let i = 0; i < 4; i += 1) fromC.push(await c.next('msg'));
      expect(fromC.map((m) => [m.seq, (m.data as { n: number }).n, m.redelivered])).toEqual([
        [1, 1, true],
        [2, 2, true],
        [3, 3, true],
        [4, 4, true],
      ]);
      for (const client of [a, b, c]) client.close();
    });
  });

  describe('tokens', () => {
    it('closes with 4008 when the token expires, unless refreshed in time', async () => {
      const user = uid('exp');
      const client = await RawClient.connect(relay.url);
      client.send({ type: 'hello', token: token(user, 2) });
      await client.next('welcome');
      const refreshed = await RawClient.connect(relay.url);
      refreshed.send({ type: 'hello', token: token(user, 2) });
      await refreshed.next('welcome');
      refreshed.send({ type: 'refresh', token: token(user, 60) });
      expect((await client.closeCode(6_000)).code).toBe(4008);
      refreshed.send({ type: 'ping', id: 'still-here' });
      expect(await refreshed.next('pong')).toEqual({ type: 'pong', id: 'still-here' });
      refreshed.close();
    });

    it('closes with 4003 when a refresh token names another user', async () => {
      const client = await helloed(relay, uid('ref'));
      client.send({ type: 'refresh', token: token(uid('someone-else')) });
      expect((await client.closeCode()).code).toBe(4003);
    });
  });
});
