/** Topic and pattern rules, checked before the producer touches the broker. */
import { describe, expect, it } from 'vitest';
import { Producer } from '../../src/amqp/producer.js';
import { isValidTopic, isValidTopicPattern } from '../../src/amqp/topics.js';
import { ErrorCode } from '../../src/errors.js';

const GOOD_TOPICS = ['news', 'news.sports.x', 'team.42', 'a-b_c.D9', 'x'.repeat(255)];
const BAD_TOPICS = ['', '.', 'news.', '.news', 'news..sports', 'news.*', 'news.#', 'news sports', 'news/sports', 'né.ws', 'x'.repeat(256)];

describe('isValidTopic', () => {
  it('takes words of [A-Za-z0-9_-] separated by dots, at most 255 characters', () => {
    expect(GOOD_TOPICS.filter((topic) => !isValidTopic(topic))).toEqual([]);
    expect(BAD_TOPICS.filter((topic) => isValidTopic(topic))).toEqual([]);
    expect([undefined, null, 42, ['news']].some((value) => isValidTopic(value))).toBe(false);
  });
});

describe('isValidTopicPattern', () => {
  it('takes topics and * or # as whole words', () => {
    const good = [...GOOD_TOPICS, 'news.sports.*', 'team.42.#', '#', '*', '*.x.#', '#.#'];
    const bad = ['', 'news.sport*', 'news.#x', 'news..#', 'news.**', 'news.*.', 'team 42.#', 'x'.repeat(256)];
    expect(good.filter((pattern) => !isValidTopicPattern(pattern))).toEqual([]);
    expect(bad.filter((pattern) => isValidTopicPattern(pattern))).toEqual([]);
  });
});

describe('Producer topics', () => {
  // Nothing listens on port 1: a call that got as far as the broker would fail with another code.
  it('refuses a bad topic or pattern before it touches the broker', async () => {
    const producer = new Producer({ url: 'amqp://127.0.0.1:1' });
    try {
      await expect(producer.publishTopic('news.*', { n: 1 })).rejects.toMatchObject({ code: ErrorCode.invalidTopic });
      await expect(producer.publishTopic('', { n: 1 })).rejects.toMatchObject({ code: ErrorCode.invalidTopic });
      await expect(producer.follow('alice', 'news..x')).rejects.toMatchObject({
        code: ErrorCode.invalidTopicPattern,
        message: expect.stringContaining('"news..x"') as unknown,
      });
      await expect(producer.unfollow('alice', 'news.sport*')).rejects.toMatchObject({ code: ErrorCode.invalidTopicPattern });
      await expect(producer.follow('bad user', 'news.#')).rejects.toMatchObject({ code: ErrorCode.invalidUserId });
    } finally {
      await producer.close();
    }
  });

  it('says following() needs the management API when none is configured', async () => {
    const producer = new Producer({ url: 'amqp://127.0.0.1:1' });
    try {
      await expect(producer.following('alice')).rejects.toMatchObject({
        code: ErrorCode.managementApi,
        message: expect.stringContaining('managementUrl') as unknown,
      });
    } finally {
      await producer.close();
    }
  });
});
