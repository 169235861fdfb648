import { describe, expect, it } from 'vitest';
import { canTransition, type ClientState } from '../../src/client/client-state.js';
import { decideAfterClose } from '../../src/client/close-decision.js';
import { streamUrl } from '../../src/client/transport.js';

describe('decideAfterClose', () => {
  it('stops on 1000', () => {
    expect(decideAfterClose(1000, '')).toEqual({ kind: 'stop' });
  });

  it.each([1008, 1009, 4003])('gives up on %i', (code) => {
    expect(decideAfterClose(code, 'nope')).toEqual({ kind: 'fail' });
  });

  it.each([1001, 1006, 1011, 1012, 1005, 1015, 4999])('reconnects and resumes on %i', (code) => {
    expect(decideAfterClose(code, '')).toEqual({ kind: 'reconnect', tokenReason: 'connect' });
  });

  it('asks for a new token on 4001 and 4008', () => {
    expect(decideAfterClose(4001, 'invalid token')).toEqual({ kind: 'reconnect', tokenReason: 'rejected' });
    expect(decideAfterClose(4008, 'token expired')).toEqual({ kind: 'reconnect', tokenReason: 'expired' });
  });

  it('does not count 4001 hello timeout as a refused token', () => {
    expect(decideAfterClose(4001, 'hello timeout')).toEqual({ kind: 'reconnect', tokenReason: 'connect' });
  });

  it("carries 1013's retry-after", () => {
    expect(decideAfterClose(1013, 'retry-after=2500 unavailable')).toEqual({
      kind: 'reconnect',
      tokenReason: 'connect',
      retryAfterMs: 2500,
    });
    expect(decideAfterClose(1013, 'busy')).toEqual({ kind: 'reconnect', tokenReason: 'connect' });
  });
});

describe('client states', () => {
  const states: ClientState[] = ['idle', 'connecting', 'open', 'reconnecting', 'closed'];

  it('allows exactly the documented transitions', () => {
    const allowed = states.flatMap((from) => states.filter((to) => canTransition(from, to)).map((to) => `${from}->${to}`));
    expect(allowed.sort()).toEqual(
      [
        'idle->connecting',
        'idle->closed',
        'connecting->open',
        'connecting->reconnecting',
        'connecting->closed',
        'open->reconnecting',
        'open->closed',
        'reconnecting->connecting',
        'reconnecting->closed',
      ].sort(),
    );
  });
});

describe('streamUrl', () => {
  it.each([
    ['ws://127.0.0.1:8080', 'ws://127.0.0.1:8080/v1/stream'],
    ['http://relay.example/', 'ws://relay.example/v1/stream'],
    ['https://relay.example', 'wss://relay.example/v1/stream'],
    ['wss://relay.example/custom/path?x=1', 'wss://relay.example/custom/path?x=1'],
  ])('maps %s to %s', (input, output) => {
    expect(streamUrl(input)).toBe(output);
  });

  it('refuses other schemes', () => {
    expect(() => streamUrl('ftp://relay.example')).toThrow(/unsupported scheme/);
  });
});
