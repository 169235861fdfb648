import { describe, expect, it } from 'vitest';
import { REPLAY_HEADER, decodeMessage, msgFrame } from '../../src/delivery/message-codec.js';

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

  it('defaults the content type to JSON', () => {
    const decoded = decodeMessage(Buffer.from('"x"'), props({ contentType: undefined }), 1024);
    expect(decoded.ok && decoded.fragment.includes('"contentType":"application/json"')).toBe(true);
  });

  it('gives a replayed message a new idempotency key but keeps its id', () => {
    const first = decodeMessage(Buffer.from('1'), props(), 1024);
    const replay = decodeMessage(Buffer.from('1'), props({ headers: { [REPLAY_HEADER]: 2 } }), 1024);
    expect(first.ok && replay.ok && [first.key, replay.key, replay.id]).toEqual(['m1', 'm1#replay2', 'm1']);
  });
});
