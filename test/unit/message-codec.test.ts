import { describe, expect, it } from 'vitest';
import { REPLAY_HEADER, REPLAY_SEAL_HEADER, decodeMessage, msgFrame, type ReplayContext } from '../../src/delivery/message-codec.js';
import { ReplaySeal } from '../../src/delivery/replay-seal.js';

const KEY = 'replay-key-4f9c1e7a2b8d6f0319a5c7e2d4b6f8a0';
const OLD_KEY = 'replay-key-0a8f6b4d2e7c5a9130f6d8b2a7e1c9f4';

const props = (over: Record<string, unknown> = {}) => ({
  messageId: 'm1',
  contentType: 'application/json',
  timestamp: 1_700_000_000_000,
  headers: {},
  ...over,
});

describe('message codec', () => {
  it('copies a JSON body into the frame as written and keeps the producer timestamp', () => {
    const decoded = decodeMessage(Buffer.from(' {"a": [1, 2]} '), props(), 1024);
    expect(decoded.ok).toBe(true);
    if (!decoded.ok) return;
    expect(JSON.parse(msgFrame(7, false, decoded.fragment))).toEqual({
      type: 'msg',
      seq: 7,
      redelivered: false,
      id: 'm1',
      ts: 1_700_000_000_000,
      contentType: 'application/json',
      data: { a: [1, 2] },
    });
  });

  it('carries the topic a message came through into the frame, and none for a direct message', () => {
    const viaTopic = decodeMessage(Buffer.from('{"a":1}'), { ...props(), topic: 'news.sports.x' }, 1024);
    const direct = decodeMessage(Buffer.from('{"a":1}'), props(), 1024);
    if (!viaTopic.ok || !direct.ok) throw new Error('refused');
    expect(JSON.parse(msgFrame(3, false, viaTopic.fragment))).toMatchObject({ topic: 'news.sports.x', data: { a: 1 } });
    expect('topic' in (JSON.parse(msgFrame(3, false, direct.fragment)) as object)).toBe(false);
  });

  it('encodes other content types as base64 and scales a timestamp in seconds to ms', () => {
    const decoded = decodeMessage(Buffer.from([1, 2, 3]), props({ contentType: 'image/png', timestamp: 1_700_000_000 }), 1024);
    if (!decoded.ok) throw new Error(decoded.reason);
    const frame = JSON.parse(msgFrame(1, true, decoded.fragment)) as { data: string; ts: number; contentType: string };
    expect([frame.data, frame.ts, frame.contentType]).toEqual(['AQID', 1_700_000_000_000, 'image/png']);
  });

  it('refuses a missing or control-character messageId, invalid JSON and oversized bodies', () => {
    expect(decodeMessage(Buffer.from('{}'), props({ messageId: undefined }), 1024).ok).toBe(false);
    expect(decodeMessage(Buffer.from('{}'), props({ messageId: 'a\nb' }), 1024).ok).toBe(false);
    expect(decodeMessage(Buffer.from('{oops'), props(), 1024).ok).toBe(false);
    expect(decodeMessage(Buffer.from('[1,2,3]'), props(), 4).ok).toBe(false);
  });

  it('names the dead-letter reason of a refused message: too-large for an oversized body, invalid-message otherwise', () => {
    const code = (decoded: ReturnType<typeof decodeMessage>) => (decoded.ok ? 'ok' : decoded.code);
    expect(code(decodeMessage(Buffer.from('[1,2,3]'), props(), 4))).toBe('too-large');
    expect(code(decodeMessage(Buffer.from('{}'), props({ messageId: undefined }), 1024))).toBe('invalid-message');
    expect(code(decodeMessage(Buffer.from('{oops'), props(), 1024))).toBe('invalid-message');
  });

  it('defaults the content type to JSON', () => {
    const decoded = decodeMessage(Buffer.from('"x"'), props({ contentType: undefined }), 1024);
    expect(decoded.ok && decoded.fragment.includes('"contentType":"application/json"')).toBe(true);
  });

  describe('replay header', () => {
    const seal = new ReplaySeal([KEY]);
    const alice: ReplayContext = { user: 'alice', seal };
    const body = Buffer.from('{"n":1}');
    const sealed = (count: number, user = 'alice', content = body, by = seal) => ({
      [REPLAY_HEADER]: count,
      [REPLAY_SEAL_HEADER]: by.seal({ user, messageId: 'm1', count, body: content }),
    });
    const decode = (headers: Record<string, unknown>, context: ReplayContext | undefined = alice, content: Buffer = body) =>
      decodeMessage(content, props({ headers }), 1024, 0, context);

    it('gives a sealed replay a new idempotency key but keeps its id', () => {
      const first = decode({});
      const replay = decode(sealed(2));
      expect(first.ok && replay.ok && [first.key, replay.key, replay.id, replay.replayRefused]).toEqual([
        'm1',
        'm1#replay2',
        'm1',
        undefined,
      ]);
    });

    it('ignores a replay header without a valid seal: the message keeps its messageId as key, and says why', () => {
      const refused = (headers: Record<string, unknown>, context?: ReplayContext, content?: Buffer) => {
        const decoded = decode(headers, context, content);
        return decoded.ok ? [decoded.key, decoded.replayRefused] : decoded.reason;
      };
      expect(refused({ [REPLAY_HEADER]: 1 })).toEqual(['m1', 'no-seal']);
      expect(refused({ [REPLAY_HEADER]: 1, [REPLAY_SEAL_HEADER]: 'forged' })).toEqual(['m1', 'bad-seal']);
      expect(refused({ [REPLAY_HEADER]: 1, [REPLAY_SEAL_HEADER]: Buffer.alloc(32).toString('base64url') })).toEqual(['m1', 'bad-seal']);
      expect(refused({ [REPLAY_HEADER]: 1, [REPLAY_SEAL_HEADER]: 42 })).toEqual(['m1', 'bad-seal']);
      // A valid seal copied onto another user's message, another count or another body.
      expect(refused(sealed(1, 'bob'))).toEqual(['m1', 'bad-seal']);
      expect(refused({ ...sealed(1), [REPLAY_HEADER]: 2 })).toEqual(['m1', 'bad-seal']);
      expect(refused(sealed(1), alice, Buffer.from('{"n":2}'))).toEqual(['m1', 'bad-seal']);
      // Sealed with another key, or a relay without REPLAY_KEY (or a caller that passes no context).
      expect(refused(sealed(1, 'alice', body, new ReplaySeal([OLD_KEY])))).toEqual(['m1', 'bad-seal']);
      expect(refused(sealed(1), { user: 'alice', seal: undefined })).toEqual(['m1', 'no-key']);
      const noContext = decodeMessage(body, props({ headers: sealed(1) }), 1024);
      expect(noContext.ok && [noContext.key, noContext.replayRefused]).toEqual(['m1', 'no-key']);
    });

    it('takes no replay header that is not a positive whole count as a replay at all', () => {
      for (const count of [0, -1, 1.5, '1', null]) {
        const decoded = decode({ [REPLAY_HEADER]: count });
        expect(decoded.ok && [decoded.key, decoded.replayRefused], String(count)).toEqual(['m1', undefined]);
      }
    });

    it('accepts seals of the previous key while keys are rotated, and seals with the first', () => {
      const rotating = new ReplaySeal([KEY, OLD_KEY]);
      const byOld = decode(sealed(1, 'alice', body, new ReplaySeal([OLD_KEY])), { user: 'alice', seal: rotating });
      expect(byOld.ok && byOld.key).toBe('m1#replay1');
      const claim = { user: 'alice', messageId: 'm1', count: 1, body };
      expect(rotating.seal(claim)).toBe(seal.seal(claim));
      expect(() => new ReplaySeal([])).toThrow();
      // The fingerprint names the sealing key, and only that one.
      expect(rotating.fingerprint()).toBe(seal.fingerprint());
      expect(new ReplaySeal([OLD_KEY]).fingerprint()).not.toBe(seal.fingerprint());
      expect(seal.fingerprint()).toMatch(/^[A-Za-z0-9_-]{12}$/);
    });
  });
});
