/**
 * ConsumerSettlement against a recording channel: a dead letter is acked only after its copy is
 * confirmed, a multiple ack never covers it, a failed copy becomes a plain reject, and nothing is
 * sent once the channel ended. The copy itself: dead-letter-copy.ts.
 */
import type { MessageProperties, XDeath } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { ConsumerSettlement, type DeadLetterOutcome } from '../../src/amqp/consumer-settlement.js';
import { DEAD_LETTER_REASONS, deadLetterCopyOptions, type CopySource, type DeadLetterLabel } from '../../src/amqp/dead-letter-copy.js';
import { silentLogger } from '../../src/log.js';

type Frame = `ack ${number}` | `ack ${number} multiple` | `reject ${number}` | `requeue ${number}`;

interface Copy {
  message: CopySource;
  label: DeadLetterLabel;
  confirm(): void;
  fail(error?: Error): void;
}

function properties(overrides: Partial<MessageProperties> = {}): MessageProperties {
  return {
    contentType: 'application/json',
    contentEncoding: undefined,
    headers: {},
    deliveryMode: 2,
    priority: undefined,
    correlationId: undefined,
    replyTo: undefined,
    expiration: undefined,
    messageId: 'm-1',
    timestamp: undefined,
    type: undefined,
    userId: undefined,
    appId: undefined,
    clusterId: undefined,
    ...overrides,
  };
}

function harness() {
  const frames: Frame[] = [];
  const copies: Copy[] = [];
  const outcomes: DeadLetterOutcome[] = [];
  let closed = false;
  const settlement = new ConsumerSettlement({
    channel: {
      ack: (tag, multiple) => {
        if (closed) throw new Error('Channel closed');
        frames.push(multiple ? `ack ${tag} multiple` : `ack ${tag}`);
      },
      nack: (tag, requeue) => {
        if (closed) throw new Error('Channel closed');
        frames.push(requeue ? `requeue ${tag}` : `reject ${tag}`);
      },
    },
    queue: 'inbox.alice',
    user: 'alice',
    logger: silentLogger(),
    now: () => 1_700_000_000_000,
    publish: (message, label) =>
      new Promise<void>((resolve, reject) => {
        copies.push({ message, label, confirm: resolve, fail: (error = new Error('nacked')) => reject(error) });
      }),
    onDeadLettered: (outcome) => outcomes.push(outcome),
  });
  const deliver = (...tags: number[]) => {
    for (const tag of tags) settlement.received(tag, Buffer.from(`{"n":${tag}}`), properties({ messageId: `m-${tag}` }));
  };
  // Lets pending promise reactions run (no timers: nothing here waits for time).
  const tick = async () => {
    for (let i = 0; i < 10; i += 1) await Promise.resolve();
  };
  return {
    settlement,
    frames,
    copies,
    outcomes,
    deliver,
    tick,
    closeChannel: () => {
      closed = true;
    },
  };
}

describe('ConsumerSettlement', () => {
  it('acks a burst as one multiple ack when no dead letter is in flight', () => {
    const h = harness();
    h.deliver(1, 2, 3);
    h.settlement.ack(3, true);
    expect(h.frames).toEqual(['ack 3 multiple']);
  });

  it('publishes the copy with its reason, queue and user, and acks the original only after the confirm', async () => {
    const h = harness();
    h.deliver(1);
    h.settlement.deadLetter(1, 'client-nack');
    await h.tick();
    expect(h.frames).toEqual([]);
    expect(h.copies).toHaveLength(1);
    expect(h.copies[0]!.label).toEqual({ reason: 'client-nack', queue: 'inbox.alice', user: 'alice', at: 1_700_000_000_000 });
    expect(h.copies[0]!.message.content.toString()).toBe('{"n":1}');
    expect(h.copies[0]!.message.properties.messageId).toBe('m-1');
    h.copies[0]!.confirm();
    await h.settlement.settled();
    expect(h.frames).toEqual(['ack 1']);
    expect(h.outcomes).toEqual([{ reason: 'client-nack', copied: true }]);
  });

  it('never lets a multiple ack cover a dead letter whose copy is not confirmed: it acks the others one by one', async () => {
    const h = harness();
    h.deliver(1, 2, 3, 4);
    h.settlement.deadLetter(2, 'nack-limit');
    h.settlement.ack(4, true);
    expect(h.frames).toEqual(['ack 1', 'ack 3', 'ack 4']);
    h.copies[0]!.confirm();
    await h.settlement.settled();
    expect(h.frames).toEqual(['ack 1', 'ack 3', 'ack 4', 'ack 2']);
    // Once it is settled, multiple acks are back.
    h.deliver(5, 6);
    h.settlement.ack(6, true);
    expect(h.frames.at(-1)).toBe('ack 6 multiple');
  });

  it('acks with multiple again when the dead letter in flight is above the acked tag', () => {
    const h = harness();
    h.deliver(1, 2, 3);
    h.settlement.deadLetter(3, 'client-nack');
    h.settlement.ack(2, true);
    expect(h.frames).toEqual(['ack 2 multiple']);
  });

  it('rejects the original plainly (RabbitMQ dead-letters it) when the copy fails, and never acks it', async () => {
    const h = harness();
    h.deliver(1, 2);
    h.settlement.deadLetter(1, 'too-large');
    h.settlement.ack(2, true);
    h.copies[0]!.fail(new Error('no confirm'));
    await h.settlement.settled();
    expect(h.frames).toEqual(['ack 2', 'reject 1']);
    expect(h.frames).not.toContain('ack 1');
    expect(h.outcomes).toEqual([{ reason: 'too-large', copied: false }]);
  });

  it('sends nothing for a dead letter whose channel ended before the confirm (RabbitMQ delivers it again)', async () => {
    const h = harness();
    h.deliver(1);
    h.settlement.deadLetter(1, 'client-nack');
    h.closeChannel();
    h.settlement.end();
    h.copies[0]!.confirm();
    await h.settlement.settled();
    expect(h.frames).toEqual([]);
    expect(h.outcomes).toEqual([]);
    h.settlement.ack(1, false);
    expect(h.frames).toEqual([]);
  });

  it('reports a dead letter not settled when the channel closed under it', async () => {
    const h = harness();
    h.deliver(1);
    h.settlement.deadLetter(1, 'client-nack');
    h.closeChannel();
    h.copies[0]!.confirm();
    await h.settlement.settled();
    expect(h.frames).toEqual([]);
    expect(h.outcomes).toEqual([]);
  });

  it('resolves settled() only once every dead letter started before it is settled', async () => {
    const h = harness();
    h.deliver(1, 2);
    h.settlement.deadLetter(1, 'client-nack');
    h.settlement.deadLetter(2, 'client-nack');
    let settled = false;
    const waiting = h.settlement.settled().then(() => {
      settled = true;
    });
    h.copies[0]!.confirm();
    await h.tick();
    expect(settled).toBe(false);
    expect(h.settlement.deadLettersInFlight).toBe(1);
    h.copies[1]!.fail();
    await waiting;
    expect(h.frames).toEqual(['ack 1', 'reject 2']);
  });

  it('dead-letters a tag once, however often it is asked', async () => {
    const h = harness();
    h.deliver(1);
    h.settlement.deadLetter(1, 'client-nack');
    h.settlement.deadLetter(1, 'client-nack');
    expect(h.copies).toHaveLength(1);
    h.copies[0]!.confirm();
    await h.settlement.settled();
    expect(h.frames).toEqual(['ack 1']);
  });

  it('keeps its own copy of the body, not the slice amqplib handed out', () => {
    const h = harness();
    const read = Buffer.from('xx{"big":true}yy');
    const content = read.subarray(2, 14);
    h.settlement.received(7, content, properties());
    h.settlement.deadLetter(7, 'client-nack');
    const copied = h.copies[0]!.message.content;
    expect(copied.toString()).toBe('{"big":true}');
    expect(copied.buffer === read.buffer && copied.byteOffset === 2).toBe(false);
  });

  it('requeues with a nack that requeues', () => {
    const h = harness();
    h.deliver(1);
    h.settlement.requeue(1);
    expect(h.frames).toEqual(['requeue 1']);
  });
});

describe('deadLetterCopyOptions', () => {
  const label: DeadLetterLabel = { reason: 'client-nack', queue: 'inbox.alice', user: 'alice', at: 1_700_000_000_123 };

  it('keeps the properties and headers of the original and adds the reason, user, queue and time', () => {
    const options = deadLetterCopyOptions(
      properties({
        messageId: 'm-9',
        contentType: 'text/plain',
        contentEncoding: 'gzip',
        timestamp: 1_600_000_000_000,
        correlationId: 'c-1',
        replyTo: 'r',
        type: 'note',
        appId: 'app',
        priority: 3,
        headers: { 'x-custom': 'kept', 'x-inbox-relay-replay': 2, 'x-inbox-relay-replay-seal': 'seal' },
      }),
      label,
    );
    expect(options).toEqual({
      persistent: true,
      messageId: 'm-9',
      contentType: 'text/plain',
      contentEncoding: 'gzip',
      timestamp: 1_600_000_000_000,
      correlationId: 'c-1',
      replyTo: 'r',
      type: 'note',
      appId: 'app',
      priority: 3,
      headers: {
        'x-custom': 'kept',
        'x-inbox-relay-replay': 2,
        'x-inbox-relay-replay-seal': 'seal',
        'x-inbox-relay-reason': 'client-nack',
        'x-inbox-relay-user': 'alice',
        'x-inbox-relay-queue': 'inbox.alice',
        'x-inbox-relay-dead-lettered-at': 1_700_000_000_123,
      },
    });
  });

  it('drops expiration, userId, the broker death headers, and any relay label the original carried', () => {
    const options = deadLetterCopyOptions(
      properties({
        expiration: '1000',
        userId: 'someone',
        headers: {
          'x-death': [{ reason: 'expired' } as unknown as XDeath],
          'x-first-death-reason': 'expired',
          'x-last-death-queue': 'q',
          'x-delivery-count': 3,
          'x-inbox-relay-reason': 'forged',
          'x-inbox-relay-user': 'mallory',
        },
      }),
      { ...label, user: undefined, reason: 'invalid-user-id', queue: 'inbox.unrouted' },
    );
    expect(options.expiration).toBeUndefined();
    expect(options.userId).toBeUndefined();
    expect(options.headers).toEqual({
      'x-inbox-relay-reason': 'invalid-user-id',
      'x-inbox-relay-queue': 'inbox.unrouted',
      'x-inbox-relay-dead-lettered-at': 1_700_000_000_123,
    });
  });

  it('names every reason the relay dead-letters for', () => {
    expect([...DEAD_LETTER_REASONS].sort()).toEqual(
      [
        'client-nack',
        'invalid-message',
        'invalid-user-id',
        'nack-limit',
        'receipt-without-message-id',
        'too-large',
        'unroutable-inbox-full',
      ].sort(),
    );
  });
});
