import { describe, expect, it } from 'vitest';
import { ackSweepIntervalMs, decideAckProgress } from '../../src/server/ack-progress.js';
import { PongLiveness } from '../../src/server/heartbeat.js';

/** A liveness whose ping payloads are p1, p2, ... */
function countingLiveness(): PongLiveness {
  let sent = 0;
  return new PongLiveness(() => `p${(sent += 1)}`);
}

/** One beat; answers its ping when it was one. */
function beatAndAnswer(liveness: PongLiveness): string {
  const beat = liveness.beat();
  if (beat.action === 'ping') liveness.pong(beat.payload);
  return beat.action;
}

describe('PongLiveness', () => {
  it('pings on the first beat and cuts on the next one when no pong came', () => {
    const liveness = countingLiveness();
    expect([liveness.beat(), liveness.beat()]).toEqual([{ action: 'ping', payload: 'p1' }, { action: 'terminate' }]);
  });

  it('keeps pinging a connection that answers every ping', () => {
    const liveness = countingLiveness();
    const actions = [];
    for (let beat = 0; beat < 5; beat += 1) actions.push(beatAndAnswer(liveness));
    expect(actions).toEqual(['ping', 'ping', 'ping', 'ping', 'ping']);
  });

  it('cuts a connection that answered once and then went silent, on the second beat after its last pong', () => {
    const liveness = countingLiveness();
    beatAndAnswer(liveness);
    expect([liveness.beat().action, liveness.beat().action]).toEqual(['ping', 'terminate']);
  });

  it('does not count pongs that do not echo the outstanding ping: unsolicited, early, stale or empty', () => {
    const liveness = countingLiveness();
    liveness.pong('p1');
    liveness.pong('');
    expect(liveness.beat()).toEqual({ action: 'ping', payload: 'p1' });
    liveness.pong('');
    liveness.pong('p2');
    liveness.pong('P1');
    expect(liveness.beat()).toEqual({ action: 'terminate' });
  });

  it('does not count a repeated pong of an answered ping towards the next one', () => {
    const liveness = countingLiveness();
    beatAndAnswer(liveness);
    expect(liveness.beat()).toEqual({ action: 'ping', payload: 'p2' });
    liveness.pong('p1');
    expect(liveness.beat()).toEqual({ action: 'terminate' });
  });

  it('sends a different, unguessable payload on every ping by default', () => {
    const liveness = new PongLiveness();
    const payloads = new Set<string>();
    for (let beat = 0; beat < 50; beat += 1) {
      const next = liveness.beat();
      if (next.action !== 'ping') throw new Error('expected a ping');
      expect(next.payload).toMatch(/^[0-9a-f]{16}$/);
      payloads.add(next.payload);
      liveness.pong(next.payload);
    }
    expect(payloads.size).toBe(50);
  });
});

describe('decideAckProgress', () => {
  const base = { lastProgressAt: 1_000, ackTimeoutMs: 500 };

  it('is idle when nothing is unacked, however long ago the last ack was', () => {
    expect(decideAckProgress({ ...base, unacked: 0, now: 100_000 })).toBe('idle');
  });

  it('waits while unacked messages are younger than the timeout', () => {
    expect(decideAckProgress({ ...base, unacked: 3, now: 1_499 })).toBe('waiting');
  });

  it('times out at exactly the timeout without progress', () => {
    expect(decideAckProgress({ ...base, unacked: 1, now: 1_500 })).toBe('timed-out');
    expect(decideAckProgress({ ...base, unacked: 1, now: 9_000 })).toBe('timed-out');
  });
});

describe('ackSweepIntervalMs', () => {
  it('is a quarter of the timeout, kept between 250 ms and 5 s', () => {
    expect(ackSweepIntervalMs(1_000)).toBe(250);
    expect(ackSweepIntervalMs(400)).toBe(250);
    expect(ackSweepIntervalMs(8_000)).toBe(2_000);
    expect(ackSweepIntervalMs(300_000)).toBe(5_000);
  });
});
