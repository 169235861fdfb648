import { describe, expect, it } from 'vitest';
import { ClientErrorCode } from '../../src/client/errors.js';
import { helloFrame, readWelcome } from '../../src/client/handshake.js';
import { resolveOptions } from '../../src/client/options.js';
import type { WelcomeFrame } from '../../src/protocol/index.js';

const welcome = (over: Partial<WelcomeFrame> = {}): WelcomeFrame => ({
  type: 'welcome',
  session: 's',
  user: 'alice',
  epoch: 'E2',
  lastSeq: 7,
  resumed: true,
  recovered: true,
  window: 10,
  heartbeatMs: 25_000,
  ...over,
});

describe('helloFrame', () => {
  it('resumes with the epoch and seq only, never the stored user', () => {
    expect(helloFrame('t', { epoch: 'E1', lastSeq: 4, user: 'alice' }, 5)).toEqual({
      type: 'hello',
      token: 't',
      resume: { epoch: 'E1', lastSeq: 4 },
      window: 5,
    });
    expect(helloFrame('t', undefined, undefined)).toEqual({ type: 'hello', token: 't' });
  });

  it('carries the device label when one is set', () => {
    expect(helloFrame('t', undefined, undefined, 'phone')).toEqual({ type: 'hello', token: 't', device: 'phone' });
  });
});

describe('the device option', () => {
  const base = { url: 'ws://127.0.0.1:1', token: 't' };

  it('accepts 1 to 64 characters, counted as code points', () => {
    expect(resolveOptions({ ...base, device: 'x'.repeat(64) }).device).toBe('x'.repeat(64));
    expect(resolveOptions({ ...base, device: '📱'.repeat(64) }).device).toBe('📱'.repeat(64));
    expect(resolveOptions(base).device).toBeUndefined();
  });

  it('refuses a longer or empty label with an error naming the option', () => {
    for (const device of ['x'.repeat(65), '']) {
      expect(() => resolveOptions({ ...base, device })).toThrow(
        expect.objectContaining({ code: ClientErrorCode.invalidOption, message: 'device: must be a string of 1 to 64 characters' }),
      );
    }
  });
});

describe('readWelcome', () => {
  it('reports a new epoch as one reset, and no gap', () => {
    const previous = { epoch: 'E1', lastSeq: 9 };
    const report = readWelcome(
      welcome({ recovered: false, lastSeq: 0 }),
      { previous, position: { epoch: 'E2', lastSeq: 0 }, epochChanged: true },
      false,
    );
    expect(report.reset).toMatchObject({ epoch: 'E2', lastSeq: 0, previous });
    expect(report.gap).toBeUndefined();
    expect(readWelcome(welcome(), { previous, position: { epoch: 'E2', lastSeq: 0 }, epochChanged: true }, true).reset).toBeUndefined();
  });

  it('reports a gap within the epoch, from the seq after the one the client held', () => {
    const report = readWelcome(
      welcome({ epoch: 'E1', recovered: false, lastSeq: 12 }),
      { previous: { epoch: 'E1', lastSeq: 4 }, position: { epoch: 'E1', lastSeq: 12 }, epochChanged: false },
      false,
    );
    expect(report.gap).toEqual({ epoch: 'E1', lostFromSeq: 5, resumesAfterSeq: 12 });
    expect(report.reset).toBeUndefined();
    expect(report.open).not.toHaveProperty('type');
    expect(report.open.lastSeq).toBe(12);
  });
});
