import { describe, expect, it } from 'vitest';
import { ackSweepIntervalMs, decideAckProgress } from '../../src/server/ack-progress.js';
import { PongLiveness } from '../../src/server/heartbeat.js';

describe('PongLiveness', () => {
  it('pings on the first beat and cuts on the next one when no pong came', () => {
    const liveness = new PongLiveness();
    expect([liveness.beat(), liveness.beat()]).toEqual(['ping', 'terminate']);
  });

  it('keeps pinging a connection that answers every ping', () => {
    const liveness = new PongLiveness();
    const actions = [];
    for (let beat = 0; beat < 5; beat += 1) {
      actions.push(liveness.beat());
      liveness.pong();
    }
    expect(actions).toEqual(['ping', 'ping', 'ping', 'ping', 'ping']);
  });

  it('cuts a connection that answered once and then went silent, on the second beat after its last pong', () => {
    const liveness = new PongLiveness();
    liveness.beat();
    liveness.pong();
    expect([liveness.beat(), liveness.beat()]).toEqual(['ping', 'terminate']);
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
