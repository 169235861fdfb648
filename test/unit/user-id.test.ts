import { describe, expect, it } from 'vitest';
import { RESERVED_USER_IDS, isValidUserId } from '../../src/protocol/user-id.js';

describe('user ids', () => {
  it('accepts 1-128 characters of [A-Za-z0-9._:@-]', () => {
    for (const id of ['alice', 'a', 'user@example.com', 'tenant:42.a_b-c', 'x'.repeat(128), '__proto', 'Constructor', 'proto'])
      expect(isValidUserId(id), id).toBe(true);
  });

  it('refuses ids outside the pattern and anything that is not a string', () => {
    for (const id of ['', 'x'.repeat(129), 'a b', 'a/b', 'ä', 'a#b', 'a\n'] as const) expect(isValidUserId(id), id).toBe(false);
    for (const value of [undefined, null, 42, {}, ['alice']]) expect(isValidUserId(value)).toBe(false);
  });

  it("refuses the names of the relay's shared queues and the special JavaScript keys", () => {
    for (const id of ['dead', 'unrouted', 'dlx', '__proto__', 'constructor', 'prototype']) {
      expect(RESERVED_USER_IDS.has(id), id).toBe(true);
      expect(isValidUserId(id), id).toBe(false);
    }
  });
});
