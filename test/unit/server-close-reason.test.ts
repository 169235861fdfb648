import { describe, expect, it } from 'vitest';
import { MAX_CLOSE_REASON_BYTES, closeReason } from '../../src/server/close-reason.js';

const bytes = (text: string): number => Buffer.byteLength(text, 'utf8');

describe('closeReason', () => {
  it('returns a reason that fits unchanged, up to exactly 123 bytes', () => {
    expect(closeReason('expected hello first')).toBe('expected hello first');
    const full = 'a'.repeat(MAX_CLOSE_REASON_BYTES);
    expect(closeReason(full)).toBe(full);
    expect(closeReason(`${full}b`)).toBe(full);
  });

  it('cuts 100 two-byte characters (200 bytes) to 61 whole characters (122 bytes)', () => {
    const reason = 'é'.repeat(100);
    expect(reason.length).toBeLessThan(123);
    expect(bytes(reason)).toBe(200);
    expect(closeReason(reason)).toBe('é'.repeat(61));
  });

  it('never splits a three-byte character or a surrogate pair', () => {
    expect(closeReason('€'.repeat(50))).toBe('€'.repeat(41));
    expect(bytes(closeReason('€'.repeat(50)))).toBe(123);
    const emoji = '😀'.repeat(40);
    const cut = closeReason(emoji);
    expect(cut).toBe('😀'.repeat(30));
    expect(bytes(cut)).toBe(120);
    expect(closeReason(`${'a'.repeat(121)}😀`)).toBe('a'.repeat(121));
  });

  it('counts a lone surrogate as the three bytes it is sent as', () => {
    const reason = `${'a'.repeat(120)}\ud800xyz`;
    const cut = closeReason(reason);
    expect(cut).toBe(`${'a'.repeat(120)}\ud800`);
    expect(bytes(cut)).toBe(123);
  });

  it('keeps every cut within the limit for mixed text', () => {
    const alphabet = ['a', 'é', '€', '😀', '\udc00'];
    for (let length = 0; length < 200; length += 7) {
      const reason = Array.from({ length }, (_, index) => alphabet[index % alphabet.length]).join('');
      const cut = closeReason(reason);
      expect(bytes(cut)).toBeLessThanOrEqual(MAX_CLOSE_REASON_BYTES);
      expect(reason.startsWith(cut)).toBe(true);
    }
  });
});
