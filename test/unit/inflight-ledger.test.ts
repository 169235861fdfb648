import { describe, expect, it } from 'vitest';
import { InFlightLedger } from '../../src/delivery/inflight-ledger.js';

/** Holds `seq` on `tag` (received first, as a consumer does), with `ts` = 1000 + seq. */
function deliver(ledger: InFlightLedger, seq: number, tag: number, ts = 1000 + seq): void {
  ledger.received(tag);
  ledger.hold(seq, tag, { fragment: `f${seq}`, redelivered: false, ts });
}

/** A ledger holding seqs 1..n on tags 1..n. */
function ledgerOf(n: number): InFlightLedger {
  const ledger = new InFlightLedger();
  for (let i = 1; i <= n; i += 1) deliver(ledger, i, i);
  return ledger;
}

describe('InFlightLedger', () => {
  it('settles every held seq at or below the mark with one multiple-ack when nothing else is outstanding below', () => {
    const ledger = ledgerOf(5);
    const settled = ledger.settleUpTo(3);
    expect(settled).toEqual({ ack: { multiple: true, tag: 3 }, count: 3, timestamps: [1001, 1002, 1003], receipts: [] });
    expect(ledger.seqs()).toEqual([4, 5]);
    expect(ledger.size).toBe(2);
    expect(ledger.outstandingCount).toBe(2);
  });

  it('settles nothing and returns no ack when no held seq is at or below the mark', () => {
    const ledger = new InFlightLedger();
    deliver(ledger, 4, 1);
    expect(ledger.settleUpTo(3)).toEqual({ ack: undefined, count: 0, timestamps: [], receipts: [] });
    expect(ledger.seqs()).toEqual([4]);
    expect(ledger.outstandingCount).toBe(1);
  });

  it('acks one by one when an unnumbered delivery is outstanding below the highest tag', () => {
    const ledger = new InFlightLedger();
    deliver(ledger, 1, 1);
    deliver(ledger, 2, 2);
    // Tag 3 arrived but is not numbered yet: a multiple-ack of tag 4 would settle it unsent.
    ledger.received(3);
    deliver(ledger, 3, 4);
    const settled = ledger.settleUpTo(3);
    expect(settled.ack).toEqual({ multiple: false, tags: [1, 2, 4] });
    expect(settled.count).toBe(3);
    expect(ledger.outstandingCount).toBe(1);
    expect(ledger.size).toBe(0);
  });

  it('uses a multiple-ack when the only other outstanding tag is above the highest settled', () => {
    const ledger = ledgerOf(3);
    ledger.received(4);
    expect(ledger.settleUpTo(3).ack).toEqual({ multiple: true, tag: 3 });
    expect(ledger.outstandingCount).toBe(1);
  });

  it('excludes the seqs `keep` names, and acks the rest one by one when a kept one lies below', () => {
    const ledger = ledgerOf(4);
    const settled = ledger.settleUpTo(4, (seq) => seq === 2);
    expect(settled.ack).toEqual({ multiple: false, tags: [1, 3, 4] });
    expect(settled.count).toBe(3);
    expect(settled.timestamps).toEqual([1001, 1003, 1004]);
    expect(ledger.seqs()).toEqual([2]);
    expect(ledger.get(2)?.tags).toEqual([2]);
    expect(ledger.outstandingCount).toBe(1);
  });

  it('uses a multiple-ack when the kept seq lies above the highest settled tag', () => {
    const ledger = ledgerOf(4);
    expect(ledger.settleUpTo(4, (seq) => seq === 4).ack).toEqual({ multiple: true, tag: 3 });
    expect(ledger.seqs()).toEqual([4]);
  });

  it('keeps both tags of a message delivered twice and settles both, counting one timestamp', () => {
    const ledger = new InFlightLedger();
    deliver(ledger, 1, 1, 500);
    deliver(ledger, 2, 2, 600);
    // The producer retried message 1: RabbitMQ delivered it again on tag 3, numbered seq 1 again.
    deliver(ledger, 1, 3, 999);
    expect(ledger.size).toBe(2);
    expect(ledger.get(1)).toEqual({ tags: [1, 3], fragment: 'f1', redelivered: false, ts: 500 });
    const settled = ledger.settleUpTo(1);
    // Tag 2 (seq 2, not acked) lies between the two copies: they are acked one by one.
    expect(settled).toEqual({ ack: { multiple: false, tags: [1, 3] }, count: 2, timestamps: [500], receipts: [] });
    expect(ledger.seqs()).toEqual([2]);
    expect(ledger.outstandingCount).toBe(1);
  });

  it('settles a duplicate with one multiple-ack when all its tags and those below are settled together', () => {
    const ledger = new InFlightLedger();
    deliver(ledger, 1, 1);
    deliver(ledger, 2, 2);
    deliver(ledger, 1, 3);
    expect(ledger.settleUpTo(2)).toEqual({ ack: { multiple: true, tag: 3 }, count: 3, timestamps: [1001, 1002], receipts: [] });
    expect(ledger.outstandingCount).toBe(0);
  });

  it('take removes one held message and returns all its tags, once', () => {
    const ledger = new InFlightLedger();
    deliver(ledger, 1, 1);
    deliver(ledger, 2, 2);
    deliver(ledger, 2, 5);
    expect(ledger.take(2)).toEqual([2, 5]);
    expect(ledger.has(2)).toBe(false);
    expect(ledger.outstandingCount).toBe(1);
    expect(ledger.take(2)).toEqual([]);
    expect(ledger.take(9)).toEqual([]);
  });

  it('after a take, a multiple-ack no longer counts the taken tags as outstanding', () => {
    const ledger = ledgerOf(3);
    expect(ledger.take(2)).toEqual([2]);
    expect(ledger.settleUpTo(3).ack).toEqual({ multiple: true, tag: 3 });
  });

  it('never settles a tag twice: a second settleUpTo, or one after take, names nothing settled before', () => {
    const ledger = ledgerOf(4);
    expect(ledger.settleUpTo(2).ack).toEqual({ multiple: true, tag: 2 });
    expect(ledger.settleUpTo(2)).toEqual({ ack: undefined, count: 0, timestamps: [], receipts: [] });
    expect(ledger.take(3)).toEqual([3]);
    const last = ledger.settleUpTo(4);
    expect(last).toEqual({ ack: { multiple: true, tag: 4 }, count: 1, timestamps: [1004], receipts: [] });
    expect(ledger.settleUpTo(10).count).toBe(0);
    expect(ledger.outstandingCount).toBe(0);
  });

  it('a delivery settled on its own no longer blocks a multiple-ack', () => {
    const ledger = new InFlightLedger();
    deliver(ledger, 1, 1);
    // Tag 2 was invalid and rejected on its own.
    ledger.received(2);
    ledger.settled(2);
    deliver(ledger, 2, 3);
    expect(ledger.outstandingCount).toBe(2);
    expect(ledger.settleUpTo(2).ack).toEqual({ multiple: true, tag: 3 });
  });

  it('counts held messages and outstanding tags separately', () => {
    const ledger = new InFlightLedger();
    ledger.received(1);
    ledger.received(2);
    expect(ledger.size).toBe(0);
    expect(ledger.outstandingCount).toBe(2);
    ledger.hold(7, 1, { fragment: 'x', redelivered: true, ts: 42 });
    expect(ledger.size).toBe(1);
    expect(ledger.seqs()).toEqual([7]);
    expect(ledger.get(7)).toEqual({ tags: [1], fragment: 'x', redelivered: true, ts: 42 });
    expect(ledger.has(8)).toBe(false);
    expect(ledger.get(8)).toBeUndefined();
  });

  it('returns timestamps in the order the messages were held', () => {
    const ledger = new InFlightLedger();
    deliver(ledger, 3, 1, 30);
    deliver(ledger, 1, 2, 10);
    deliver(ledger, 2, 3, 20);
    const settled = ledger.settleUpTo(3);
    expect(settled.timestamps).toEqual([30, 10, 20]);
    expect(settled.ack).toEqual({ multiple: true, tag: 3 });
  });

  it('hands back messages that asked for a receipt apart from the ack, and keeps their tags outstanding until released', () => {
    const ledger = new InFlightLedger();
    for (let i = 1; i <= 4; i += 1) {
      ledger.received(i);
      ledger.hold(i, i, { fragment: `f${i}`, redelivered: false, ts: 1000 + i, ...(i % 2 === 0 ? { receipt: `m${i}` } : {}) });
    }
    const settled = ledger.settleUpTo(4);
    // 2 and 4 wait for their receipts: 1 and 3 are acked one by one, no multiple-ack covers 2.
    expect(settled.ack).toEqual({ multiple: false, tags: [1, 3] });
    expect(settled.receipts).toEqual([
      { seq: 2, messageId: 'm2', tags: [2] },
      { seq: 4, messageId: 'm4', tags: [4] },
    ]);
    expect(ledger.size).toBe(0);
    expect(ledger.outstandingCount).toBe(2);
    expect(ledger.release([2, 4])).toEqual({ multiple: true, tag: 4 });
    expect(ledger.outstandingCount).toBe(0);
    // Released once: a second release names nothing.
    expect(ledger.release([2, 4])).toBeUndefined();
  });

  it('releases tags one by one while an earlier tag is still outstanding', () => {
    const ledger = new InFlightLedger();
    for (let i = 1; i <= 3; i += 1) {
      ledger.received(i);
      ledger.hold(i, i, { fragment: `f${i}`, redelivered: false, ts: 0, receipt: `m${i}` });
    }
    const entry = ledger.detach(1);
    expect(entry?.tags).toEqual([1]);
    const settled = ledger.settleUpTo(3);
    expect(settled.receipts.map((r) => r.seq)).toEqual([2, 3]);
    expect(ledger.release([2, 3])).toEqual({ multiple: false, tags: [2, 3] });
    expect(ledger.release([1])).toEqual({ multiple: true, tag: 1 });
  });
});
