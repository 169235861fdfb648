import { describe, expect, it } from 'vitest';
import { rawDataToString } from '../../src/server/raw-data.js';

describe('rawDataToString', () => {
  const frame = '{"type":"ack","seq":7,"note":"é€"}';
  const bytes = Buffer.from(frame, 'utf8');

  it('decodes a single Buffer', () => {
    expect(rawDataToString(bytes)).toBe(frame);
  });

  it('decodes an ArrayBuffer', () => {
    const copy = new ArrayBuffer(bytes.length);
    new Uint8Array(copy).set(bytes);
    expect(rawDataToString(copy)).toBe(frame);
  });

  it('joins Buffer[] fragments without separators, even inside a multi-byte character', () => {
    const euro = bytes.indexOf(Buffer.from('€', 'utf8'));
    const fragments = [bytes.subarray(0, 5), bytes.subarray(5, euro + 1), bytes.subarray(euro + 1)];
    expect(fragments).toHaveLength(3);
    expect(rawDataToString(fragments)).toBe(frame);
    expect(String(fragments)).not.toBe(frame);
  });

  it('decodes an empty fragment list as the empty string', () => {
    expect(rawDataToString([])).toBe('');
  });
});
