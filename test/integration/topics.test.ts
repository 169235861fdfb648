/**
 * Topics against the real broker and a real relay: one publishTopic reaches every following
 * inbox exactly once, is numbered in each user's own order among direct messages, carries its
 * topic in the msg frame (history included), stops after unfollow; bad topics and patterns bind
 * and publish nothing. Patterns start with a word unique to the run, so that other tests' topics
 * never reach these inboxes. Quorum queues, the default: a run with classic queues on a loaded
 * machine saw a publish to 1,010 of them wait past the 10 s confirm timeout (and be retried).
 */
import amqp, { type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/amqp/producer.js';
import { inboxQueueName } from '../../src/amqp/topology.js';
import { ErrorCode } from '../../src/errors.js';
import type { MsgFrame } from '../../src/protocol/frames.js';
import { RawClient } from '../helpers/raw-client.js';
import { rabbitmqUrl, startTestRelay, testConfig, token, uid, type TestRelay } from '../helpers/relay.js';

const NEWS_FOLLOWERS = 1_000;
const SPORTS_FOLLOWERS = 10;
/** Of the news followers, these also follow the sports pattern: still one copy each. */
const BOTH = 5;
const PARALLEL = 25;

async function inParallel<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}

describe('topics', () => {
  const run = uid('topics');
  const root = run.replace(/[^A-Za-z0-9_-]/g, '_');
  const newsUsers = Array.from({ length: NEWS_FOLLOWERS }, (_, i) => `${run}-n${i}`);
  const sportsUsers = Array.from({ length: SPORTS_FOLLOWERS }, (_, i) => `${run}-s${i}`);
  const allUsers = [...newsUsers, ...sportsUsers];
  const settings = { queueType: 'quorum' as const, queueMaxLength: 10_000, queueDeliveryLimit: 20 };
  let producer: Producer;
  let model: ChannelModel;
  let relay: TestRelay;

  async function depths(users: readonly string[]): Promise<number[]> {
    const channel = await model.createChannel();
    try {
      const counts: number[] = [];
      for (const user of users) counts.push((await channel.checkQueue(inboxQueueName(user))).messageCount);
      return counts;
    } finally {
      await channel.close();
    }
  }

  beforeAll(async () => {
    producer = new Producer({ url: rabbitmqUrl(), provision: settings, managementUrl: 'http://guest:guest@127.0.0.1:15672' });
    model = await amqp.connect(rabbitmqUrl());
    relay = await startTestRelay(testConfig({ QUEUE_TYPE: settings.queueType, QUEUE_MAX_LENGTH: '10000' }));
    const started = Date.now();
    await inParallel(newsUsers, (user) => producer.follow(user, `${root}.news.#`));
    await inParallel([...sportsUsers, ...newsUsers.slice(0, BOTH)], (user) => producer.follow(user, `${root}.news.sports.*`));
    console.log(`topics: ${allUsers.length} inboxes provisioned and bound in ${Date.now() - started} ms`);
  }, 120_000);

  afterAll(async () => {
    await relay?.stop();
    await producer?.close();
    if (model) {
      const channel = await model.createChannel();
      for (const user of allUsers) await channel.deleteQueue(inboxQueueName(user)).catch(() => undefined);
      await model.close();
    }
  }, 120_000);

  it('lists what a user follows', async () => {
    expect(await producer.following(newsUsers[0]!)).toEqual([`${root}.news.#`, `${root}.news.sports.*`]);
    expect(await producer.following(newsUsers[BOTH]!)).toEqual([`${root}.news.#`]);
    expect(await producer.following(sportsUsers[0]!)).toEqual([`${root}.news.sports.*`]);
  });

  it('refuses a bad pattern and a bad topic, binding and publishing nothing', async () => {
    const user = sportsUsers[1]!;
    const before = await depths(allUsers);
    await expect(producer.follow(user, `${root}.news..x`)).rejects.toMatchObject({ code: ErrorCode.invalidTopicPattern });
    await expect(producer.follow(user, `${root}.news.sport*`)).rejects.toMatchObject({ code: ErrorCode.invalidTopicPattern });
    await expect(producer.publishTopic(`${root}.news.*`, { n: 0 })).rejects.toMatchObject({ code: ErrorCode.invalidTopic });
    await expect(producer.publishTopic(`${root}.news.sports x`, { n: 0 })).rejects.toMatchObject({ code: ErrorCode.invalidTopic });
    expect(await producer.following(user)).toEqual([`${root}.news.sports.*`]);
    expect(await depths(allUsers)).toEqual(before);
  });

  it('follows only an inbox that exists when the producer does not provision', async () => {
    const bare = new Producer({ url: rabbitmqUrl() });
    try {
      await expect(bare.follow(uid('topics-none'), `${root}.news.#`)).rejects.toMatchObject({ code: ErrorCode.inboxMissing });
    } finally {
      await bare.close();
    }
  });

  it('copies one publish into every following inbox exactly once, numbered among direct messages, until unfollowed', async () => {
    const watched = [newsUsers[0]!, newsUsers[BOTH]!, sportsUsers[0]!];
    const before = await depths(allUsers);
    expect(before.every((depth) => depth === 0)).toBe(true);
    let started = Date.now();
    const t1 = await producer.publishTopic(`${root}.news.sports.x`, { n: 't1' });
    console.log(`topics: one publish confirmed into ${allUsers.length} inboxes in ${Date.now() - started} ms`);
    started = Date.now();
    expect(await depths(allUsers)).toEqual(allUsers.map(() => 1));
    console.log(`topics: ${allUsers.length} queue depths checked in ${Date.now() - started} ms`);

    for (const user of watched) await producer.publish(user, { n: 'd1' }, { messageId: `d1-${user}` });
    const t2 = await producer.publishTopic(`${root}.news.weather`, { n: 't2' });
    // A producer's retry with the same messageId: a second copy in each inbox, delivered once.
    await producer.publishTopic(`${root}.news.weather`, { n: 't2' }, { messageId: t2.messageId });
    for (const user of watched) await producer.publish(user, { n: 'd2' }, { messageId: `d2-${user}` });
    const afterT2 = await depths(allUsers);
    expect(afterT2.slice(0, NEWS_FOLLOWERS).every((depth, i) => depth === (watched.includes(newsUsers[i]!) ? 5 : 3))).toBe(true);
    expect(afterT2.slice(NEWS_FOLLOWERS)).toEqual(sportsUsers.map((user) => (watched.includes(user) ? 3 : 1)));

    // The sports followers stop following: a later sports topic reaches only the news followers.
    await inParallel(sportsUsers, (user) => producer.unfollow(user, `${root}.news.sports.*`));
    expect(await producer.following(sportsUsers[0]!)).toEqual([]);
    const t3 = await producer.publishTopic(`${root}.news.sports.y`, { n: 't3' });
    const afterT3 = await depths(allUsers);
    expect(afterT3.slice(0, NEWS_FOLLOWERS)).toEqual(afterT2.slice(0, NEWS_FOLLOWERS).map((depth) => depth + 1));
    expect(afterT3.slice(NEWS_FOLLOWERS)).toEqual(afterT2.slice(NEWS_FOLLOWERS));

    const expected: Record<string, Array<[string, string | undefined]>> = {
      [newsUsers[0]!]: [
        [t1.messageId, `${root}.news.sports.x`],
        [`d1-${newsUsers[0]}`, undefined],
        [t2.messageId, `${root}.news.weather`],
        [`d2-${newsUsers[0]}`, undefined],
        [t3.messageId, `${root}.news.sports.y`],
      ],
      [newsUsers[BOTH]!]: [
        [t1.messageId, `${root}.news.sports.x`],
        [`d1-${newsUsers[BOTH]}`, undefined],
        [t2.messageId, `${root}.news.weather`],
        [`d2-${newsUsers[BOTH]}`, undefined],
        [t3.messageId, `${root}.news.sports.y`],
      ],
      [sportsUsers[0]!]: [
        [t1.messageId, `${root}.news.sports.x`],
        [`d1-${sportsUsers[0]}`, undefined],
        [`d2-${sportsUsers[0]}`, undefined],
      ],
    };
    for (const user of watched) {
      const want = expected[user]!;
      const client = await RawClient.connect(relay.url);
      client.send({ type: 'hello', token: token(user) });
      const welcome = await client.next('welcome');
      const got: MsgFrame[] = [];
      for (let i = 0; i < want.length; i += 1) got.push(await client.next('msg'));
      expect(
        got.map((frame) => frame.seq),
        user,
      ).toEqual(want.map((_, i) => i + 1));
      expect(
        got.map((frame) => [frame.id, frame.topic]),
        user,
      ).toEqual(want);
      // Acked up to the first only: the rest come again from history, topic and all.
      client.send({ type: 'ack', seq: 1 });
      client.close();
      await client.closed;
      const again = await RawClient.connect(relay.url);
      again.send({ type: 'hello', token: token(user), resume: { epoch: welcome.epoch, lastSeq: 1 } });
      await again.next('welcome');
      const resent: MsgFrame[] = [];
      for (let i = 1; i < want.length; i += 1) resent.push(await again.next('msg'));
      expect(resent.map((frame) => [frame.seq, frame.id, frame.topic])).toEqual(want.slice(1).map(([id, topic], i) => [i + 2, id, topic]));
      again.send({ type: 'ack', seq: want.length });
      again.close();
      await again.closed;
    }
  }, 120_000);
});
