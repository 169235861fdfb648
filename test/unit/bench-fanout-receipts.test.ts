import { describe, expect, it } from 'vitest';
import { FanoutReceipts } from '../../bench/scenarios/fanout-receipts.js';

const TOPIC = 'news.sports.x';

describe('FanoutReceipts', () => {
  it('is clean when every client got exactly one message with the topic, and times first, p50 and last receipt', () => {
    const receipts = new FanoutReceipts(4, TOPIC);
    // Published at 1,000 µs; receipts 2, 5, 9 and 40 ms later, out of client order.
    for (const [index, us] of [
      [2, 10_000],
      [0, 3_000],
      [3, 41_000],
      [1, 6_000],
    ] as const)
      receipts.record(index, { topic: TOPIC }, us);
    expect(receipts.reached).toBe(4);
    expect(receipts.verdict()).toBeUndefined();
    expect(receipts.times(1_000)).toEqual({ firstMs: 2, p50Ms: 5, lastMs: 40 });
  });

  it('names the clients that received nothing', () => {
    const receipts = new FanoutReceipts(3, TOPIC);
    receipts.record(1, { topic: TOPIC }, 5_000);
    expect(receipts.reached).toBe(1);
    expect(receipts.verdict()).toBe('2 of 3 clients received nothing');
  });

  it('counts a second copy to one client as an error, however many clients there are', () => {
    const receipts = new FanoutReceipts(2, TOPIC);
    receipts.record(0, { topic: TOPIC }, 1_000);
    receipts.record(1, { topic: TOPIC }, 1_000);
    receipts.record(1, { topic: TOPIC }, 2_000);
    receipts.record(1, { topic: TOPIC }, 3_000);
    expect(receipts.reached).toBe(2);
    expect(receipts.verdict()).toBe('1 of 2 clients received more than one message');
  });

  it('counts messages without the topic published to, or with another', () => {
    const receipts = new FanoutReceipts(2, TOPIC);
    receipts.record(0, {}, 1_000);
    receipts.record(1, { topic: 'news.other' }, 1_000);
    expect(receipts.verdict()).toBe(`2 messages without topic ${TOPIC}`);
  });
});
