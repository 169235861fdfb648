/** The cluster tests' checker counts each kind of failure, and nothing in a clean run. */
import { describe, expect, it } from 'vitest';
import type { IdentityLog, ReceivedMsg } from '../helpers/cluster-client.js';
import { ZERO_COUNTS, allZero, checkCluster } from '../helpers/cluster-check.js';

const msg = (seq: number, redelivered = false, connection = 1, id = `m${seq}`): ReceivedMsg => ({
  epoch: 'E',
  seq,
  id,
  redelivered,
  connection,
});

function identity(name: string, received: ReceivedMsg[], extra: Partial<IdentityLog> = {}): IdentityLog {
  let last = 0;
  const processed = received.filter((record) => (record.seq === last + 1 ? ((last = record.seq), true) : false));
  return { identity: name, user: 'u', received, processed, orderViolations: [], resets: 0, ...extra };
}

const confirmed = new Map([['u', ['m1', 'm2', 'm3']]]);

describe('checkCluster', () => {
  it('counts nothing when every client processed everything once, repeats flagged, queues empty', () => {
    const report = checkCluster({
      confirmed,
      identities: [identity('u#0', [msg(1), msg(2), msg(2, true, 2), msg(3, false, 2)]), identity('u#1', [msg(1), msg(2), msg(3)])],
      queueMessages: new Map([['u', 0]]),
    });
    expect(report.counts).toEqual(ZERO_COUNTS);
    expect(allZero(report.counts)).toBe(true);
  });

  it('counts every confirmed message a client never processed, and the client as stalled', () => {
    const report = checkCluster({ confirmed, identities: [identity('u#0', [msg(1)]), identity('u#1', [msg(1), msg(2), msg(3)])] });
    expect(report.counts).toEqual({ ...ZERO_COUNTS, lost: 2, stalled: 1 });
    expect(report.examples.join('\n')).toContain('u#0');
  });

  it('counts a seq or a message id received again without redelivered', () => {
    const again = identity('u#0', [msg(1), msg(2), msg(2, false, 2), msg(3), msg(4, false, 1, 'm3')]);
    expect(checkCluster({ confirmed, identities: [again] }).counts.unflaggedDuplicates).toBe(2);
  });

  it('counts order violations the client saw and processed seqs that skip within an epoch', () => {
    const seen = identity('u#0', [msg(1), msg(2), msg(3)], { orderViolations: ['seq 5 where 4 was next'] });
    const skipped: IdentityLog = { ...identity('u#1', [msg(1), msg(3)]), processed: [msg(1), msg(3)] };
    const report = checkCluster({ confirmed: new Map([['u', ['m1']]]), identities: [seen, skipped] });
    expect(report.counts.orderViolations).toBe(2);
  });

  it("counts a message the user's clients saw under two seqs, and a seq that carried two messages", () => {
    const report = checkCluster({
      confirmed: new Map([['u', ['m1']]]),
      identities: [
        identity('u#0', [msg(1), msg(2, false, 1, 'x')]),
        identity('u#1', [msg(1), msg(2, false, 1, 'y'), msg(3, true, 1, 'x')]),
      ],
    });
    expect(report.counts.seqMismatches).toBe(2);
  });

  it('counts resets and queues that still hold messages or could not be read', () => {
    const report = checkCluster({
      confirmed: new Map(),
      identities: [identity('u#0', [], { resets: 2 })],
      queueMessages: new Map([
        ['a', 0],
        ['b', 3],
        ['c', undefined],
      ]),
    });
    expect(report.counts).toEqual({ ...ZERO_COUNTS, resets: 2, queuesNotEmpty: 2 });
  });
});
