import { describe, expect, it } from 'vitest';
import { UserConnectionCap } from '../../src/server/user-connection-cap.js';

describe('UserConnectionCap', () => {
  it('gives a user at most max slots, and a freed slot to the next at once', () => {
    const cap = new UserConnectionCap<number>(10);
    const taken = Array.from({ length: 11 }, (_, holder) => cap.acquire('alice', holder));
    expect(taken.filter(Boolean).length).toBe(10);
    expect(taken[10]).toBe(false);
    expect(cap.count('alice')).toBe(10);
    cap.release('alice', 3);
    expect(cap.count('alice')).toBe(9);
    expect(cap.acquire('alice', 10)).toBe(true);
    expect(cap.acquire('alice', 11)).toBe(false);
    expect(cap.count('alice')).toBe(10);
  });

  it('counts each user on its own', () => {
    const cap = new UserConnectionCap<string>(2);
    expect([cap.acquire('alice', 'a1'), cap.acquire('alice', 'a2'), cap.acquire('alice', 'a3')]).toEqual([true, true, false]);
    expect([cap.acquire('bob', 'b1'), cap.acquire('bob', 'b2')]).toEqual([true, true]);
    expect([cap.count('alice'), cap.count('bob'), cap.users]).toEqual([2, 2, 2]);
  });

  it('takes one slot for a holder that asks twice, and ignores releases of slots never taken', () => {
    const cap = new UserConnectionCap<string>(2);
    expect([cap.acquire('alice', 'a1'), cap.acquire('alice', 'a1')]).toEqual([true, true]);
    expect(cap.count('alice')).toBe(1);
    cap.release('alice', 'never');
    cap.release('bob', 'a1');
    expect(cap.count('alice')).toBe(1);
    cap.release('alice', 'a1');
    cap.release('alice', 'a1');
    expect([cap.count('alice'), cap.users]).toEqual([0, 0]);
  });

  it('has no limit at 0', () => {
    const cap = new UserConnectionCap<number>(0);
    const taken = Array.from({ length: 500 }, (_, holder) => cap.acquire('alice', holder));
    expect(taken.every(Boolean)).toBe(true);
    expect(cap.count('alice')).toBe(500);
  });
});
