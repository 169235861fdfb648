/**
 * PublishChannel: which channel a producer publishes on after a refusal (retire) or a lost
 * channel (drop), with fake channels and fake timers.
 */
import { EventEmitter } from 'node:events';
import type { ConfirmChannel } from 'amqplib';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ConnectionPool } from '../../src/amqp/connection-pool.js';
import { PublishChannel } from '../../src/amqp/publish-channel.js';

class FakeChannel extends EventEmitter {
  closes = 0;
  close(): Promise<void> {
    this.closes += 1;
    this.emit('close');
    return Promise.resolve();
  }
}

function fakePool(): { pool: ConnectionPool; opened: FakeChannel[] } {
  const opened: FakeChannel[] = [];
  const pool = {
    openConfirmChannel: () => {
      const channel = new FakeChannel();
      opened.push(channel);
      return Promise.resolve(channel as unknown as ConfirmChannel);
    },
  } as unknown as ConnectionPool;
  return { pool, opened };
}

describe('PublishChannel', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('opens one channel and keeps using it', async () => {
    const { pool, opened } = fakePool();
    const channels = new PublishChannel(pool, 1_000);
    const first = await channels.current();
    expect(await channels.current()).toBe(first);
    expect(opened).toHaveLength(1);
  });

  it('retires a refused channel: new publishes go to a new one, the old closes once its confirms are in', async () => {
    const { pool, opened } = fakePool();
    const channels = new PublishChannel(pool, 1_000);
    const first = await channels.current();
    channels.published(first);
    channels.published(first);
    channels.settled(first); // the refused one
    channels.retire(first);
    const second = await channels.current();
    expect(second).not.toBe(first);
    expect(opened[0]!.closes).toBe(0);
    channels.settled(first); // the other one's confirm
    expect(opened[0]!.closes).toBe(1);
    expect(await channels.current()).toBe(second);
  });

  it('retires a channel once however many of its publishes were refused, and never the next one by mistake', async () => {
    const { pool, opened } = fakePool();
    const channels = new PublishChannel(pool, 1_000);
    const first = await channels.current();
    channels.published(first);
    channels.published(first);
    channels.published(first);
    channels.settled(first);
    channels.retire(first);
    const second = await channels.current();
    channels.settled(first);
    channels.retire(first);
    expect(await channels.current()).toBe(second);
    expect(opened).toHaveLength(2);
    channels.settled(first);
    expect(opened[0]!.closes).toBe(1);
  });

  it('closes a retired channel whose confirms never come after retireAfterMs', async () => {
    const { pool, opened } = fakePool();
    const channels = new PublishChannel(pool, 1_000);
    const first = await channels.current();
    channels.published(first);
    channels.published(first);
    channels.settled(first);
    channels.retire(first);
    vi.advanceTimersByTime(999);
    expect(opened[0]!.closes).toBe(0);
    vi.advanceTimersByTime(1);
    expect(opened[0]!.closes).toBe(1);
  });

  it('opens a new channel after the current one closed, and after a drop', async () => {
    const { pool, opened } = fakePool();
    const channels = new PublishChannel(pool, 1_000);
    const first = await channels.current();
    await first.close();
    const second = await channels.current();
    expect(second).not.toBe(first);
    await channels.drop();
    expect(opened[1]!.closes).toBe(1);
    expect(await channels.current()).not.toBe(second);
    expect(opened).toHaveLength(3);
  });
});
