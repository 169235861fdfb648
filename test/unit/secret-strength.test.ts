import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bitsPerCharacter, weakSecretReason } from '../../src/secret-strength.js';
import { TEST_SECRET } from '../helpers/relay.js';

describe('weakSecretReason', () => {
  it('lets random secrets through, as openssl rand and the test helpers make them', () => {
    for (let i = 0; i < 200; i += 1) {
      expect(weakSecretReason(randomBytes(16).toString('hex'))).toBeUndefined();
      expect(weakSecretReason(randomBytes(32).toString('hex'))).toBeUndefined();
      expect(weakSecretReason(randomBytes(32).toString('base64url'))).toBeUndefined();
    }
    expect(weakSecretReason(TEST_SECRET)).toBeUndefined();
    expect(weakSecretReason('unit-secret-0123456789-abcdefghijklmnopqrstuvwxyz')).toBeUndefined();
    expect(weakSecretReason('correct-horse-battery-staple-Tr0ub4dor&3')).toBeUndefined();
  });

  it('refuses short values', () => {
    expect(weakSecretReason('changeme')).toBe('must be at least 32 characters');
    expect(weakSecretReason('a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P')).toBe('must be at least 32 characters');
  });

  it('refuses one piece repeated, however long', () => {
    expect(weakSecretReason('x'.repeat(100))).toMatch(/one piece repeated/);
    expect(weakSecretReason('changeme'.repeat(5))).toMatch(/one piece repeated/);
    expect(weakSecretReason('0123456789abcdef'.repeat(2))).toMatch(/one piece repeated/);
  });

  it('refuses placeholder words, whatever the case and separators', () => {
    expect(weakSecretReason('your-secret-here-0123456789-abcdefgh')).toMatch(/placeholder \(contains "yoursecret"\)/);
    expect(weakSecretReason('Change_Me-0123456789-abcdefghijklmnop')).toMatch(/placeholder \(contains "changeme"\)/);
    expect(weakSecretReason('replace-with-a-random-secret-of-32-or-more-characters')).toMatch(/contains "replace"/);
  });

  it('refuses too few different characters or too little entropy per character', () => {
    expect(weakSecretReason('abcabcabcabcabcabcabcabcabcabcabcabx')).toMatch(/fewer than 8 different characters/);
    expect(weakSecretReason(`${'a'.repeat(40)}bcdefghij`)).toMatch(/too predictable/);
    expect(bitsPerCharacter('abcd')).toBe(2);
    expect(bitsPerCharacter('aaaa')).toBe(0);
  });

  it('never puts the value in its reason', () => {
    for (const value of ['zzzz', 'q'.repeat(40), 'my-example-value-0123456789-abcdefgh']) {
      expect(weakSecretReason(value) ?? '').not.toContain(value);
    }
  });
});
