import { describe, expect, it } from 'vitest';
import { RECEIPT_HEADER, asksForReceipt, encodeReceipt, parseReceipt, type DeliveryReceipt } from '../../src/delivery/delivery-receipt.js';
import { decodeMessage } from '../../src/delivery/message-codec.js';

const receipt: DeliveryReceipt = {
  messageId: 'm-1',
  user: 'alice',
  seq: 7,
  epoch: 'AbCdEfGhIjKl',
  outcome: 'acked',
  at: 1_700_000_000_123,
  node: 'node-a',
};

describe('asksForReceipt', () => {
  it('asks for true, "true" and 1 only', () => {
    expect([true, 'true', 1].map((value) => asksForReceipt({ [RECEIPT_HEADER]: value }))).toEqual([true, true, true]);
    expect([false, 'false', 0, 'yes', 2, null, {}].map((value) => asksForReceipt({ [RECEIPT_HEADER]: value }))).toEqual(
      Array(7).fill(false),
    );
    expect(asksForReceipt(undefined)).toBe(false);
    expect(asksForReceipt({ 'x-inbox-relay-receipt': true })).toBe(false);
  });
});

describe('encodeReceipt and parseReceipt', () => {
  it('read back every field the relay writes, reason only when there is one', () => {
    const acked = encodeReceipt(receipt);
    expect(JSON.parse(acked.toString())).toEqual(receipt);
    expect(parseReceipt(acked)).toEqual({ ok: true, receipt });
    const dead: DeliveryReceipt = { ...receipt, seq: null, epoch: null, outcome: 'dead-lettered', reason: 'too-large' };
    expect(parseReceipt(encodeReceipt(dead))).toEqual({ ok: true, receipt: dead });
  });

  it('refuses what is not a receipt, saying why', () => {
    expect(parseReceipt(Buffer.from('nope'))).toEqual({ ok: false, reason: 'not JSON' });
    const bad = parseReceipt(Buffer.from(JSON.stringify({ ...receipt, outcome: 'lost' })));
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.reason).toMatch(/^outcome/);
    expect(parseReceipt(Buffer.from(JSON.stringify({ ...receipt, seq: 0 }))).ok).toBe(false);
  });
});

describe('decodeMessage and receipts', () => {
  const body = Buffer.from('{"a":1}');
  const asks = { [RECEIPT_HEADER]: true };

  it('flags a message that asks, and only that one', () => {
    const asked = decodeMessage(body, { messageId: 'm1', contentType: 'application/json', timestamp: 1, headers: asks }, 1024);
    const plain = decodeMessage(body, { messageId: 'm1', contentType: 'application/json', timestamp: 1, headers: undefined }, 1024);
    expect(asked.ok && asked.receipt).toBe(true);
    expect(plain.ok && plain.receipt).toBe(false);
  });

  it('refuses a message that asks without a messageId as receipt-without-message-id, with no receipt to send', () => {
    for (const messageId of [undefined, '', 'a\u0000b']) {
      const decoded = decodeMessage(body, { messageId, contentType: 'application/json', timestamp: 1, headers: asks }, 1024);
      expect(decoded).toMatchObject({ ok: false, code: 'receipt-without-message-id' });
      expect(decoded.ok === false && decoded.receiptFor).toBeUndefined();
    }
    const plain = decodeMessage(body, { messageId: undefined, contentType: 'application/json', timestamp: 1, headers: undefined }, 1024);
    expect(plain).toMatchObject({ ok: false, code: 'invalid-message' });
  });

  it('names the messageId of an invalid message that asked, for its dead-lettered receipt', () => {
    const tooLarge = decodeMessage(
      Buffer.alloc(2000, 0x20),
      { messageId: 'big', headers: asks, contentType: undefined, timestamp: 1 },
      1024,
    );
    expect(tooLarge).toMatchObject({ ok: false, code: 'too-large', receiptFor: 'big' });
    const notJson = decodeMessage(
      Buffer.from('{'),
      { messageId: 'bad', headers: asks, contentType: 'application/json', timestamp: 1 },
      1024,
    );
    expect(notJson).toMatchObject({ ok: false, code: 'invalid-message', receiptFor: 'bad' });
  });
});
