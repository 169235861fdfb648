import amqp from 'amqplib';
import type { ChannelModel } from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { coalesceFrameWrites } from '../../src/amqp/frame-writes.js';
import { rabbitmqUrl, uid } from '../helpers/relay.js';

interface SocketWrites {
  _write: (...args: unknown[]) => void;
  _writev: (...args: unknown[]) => void;
}

/** Counts the write calls that reach the connection's socket (one per system call). */
function countWrites(model: ChannelModel): { calls: number } {
  const socket = (model as unknown as { connection: { stream: SocketWrites } }).connection.stream;
  const counter = { calls: 0 };
  const write = socket._write.bind(socket);
  const writev = socket._writev.bind(socket);
  socket._write = (...args) => {
    counter.calls += 1;
    write(...args);
  };
  socket._writev = (...args) => {
    counter.calls += 1;
    writev(...args);
  };
  return counter;
}

/** Publishes `count` messages in one turn and returns how many socket writes that took. */
async function writesForOneTurn(model: ChannelModel, count: number): Promise<number> {
  const channel = await model.createChannel();
  const queue = `inbox.${uid('fw')}`;
  await channel.assertQueue(queue, { exclusive: true });
  const counter = countWrites(model);
  for (let i = 0; i < count; i += 1) channel.sendToQueue(queue, Buffer.from(`m${i}`));
  const writes = await new Promise<number>((resolve) => setTimeout(() => resolve(counter.calls), 50));
  expect((await channel.checkQueue(queue)).messageCount).toBe(count);
  await channel.close();
  return writes;
}

describe('AMQP frame writes', () => {
  const models: ChannelModel[] = [];
  afterEach(async () => {
    await Promise.all(models.splice(0).map((model) => model.close().catch(() => undefined)));
  });
  const connect = async () => {
    const model = await amqp.connect(rabbitmqUrl());
    models.push(model);
    return model;
  };

  it('go to the socket as one write per turn once coalesced, instead of one per frame', async () => {
    const plain = await connect();
    const coalesced = await connect();
    expect(coalesceFrameWrites(coalesced)).toBe(true);
    // amqplib encodes each message (method, header and body frames) into one buffer and writes
    // them one by one (how many system calls that takes is up to Node and the kernel).
    expect(await writesForOneTurn(plain, 40)).toBeGreaterThan(1);
    expect(await writesForOneTurn(coalesced, 40)).toBe(1);
  });
});
