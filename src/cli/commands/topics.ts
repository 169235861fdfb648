/**
 * `topics follow|unfollow|list <user> [pattern]`: a user's topic patterns, which are bindings
 * from exchange inbox.topics to the user's inbox (docs/PROTOCOL.md 2.7). A bad user id or
 * pattern is a usage error (exit 2) before anything touches the broker.
 */
import { followTopic, isValidTopicPattern, listFollowedPatterns, unfollowTopic } from '../../amqp/topics.js';
import { TOPIC_EXCHANGE, declareSharedTopology, inboxQueueName, provisionInbox, queueSettingsOf } from '../../amqp/topology.js';
import type { Env } from '../../config.js';
import { errorMessage } from '../../errors.js';
import { isValidUserId } from '../../protocol/user-id.js';
import { failure, usageError } from '../cli-error.js';
import { withBroker } from '../broker.js';
import type { Invocation } from '../commands.js';
import type { Output } from '../io.js';
import { loadOperatorConfig } from '../operator-config.js';

function userOf(invocation: Invocation): string {
  const user = invocation.positionals[0]!;
  if (!isValidUserId(user)) throw usageError(`${invocation.spec.name}: <user> must be 1-128 characters of [A-Za-z0-9._:@-]`);
  return user;
}

function patternOf(invocation: Invocation): string {
  const pattern = invocation.positionals[1]!;
  if (!isValidTopicPattern(pattern)) {
    throw usageError(
      `${invocation.spec.name}: invalid pattern ${JSON.stringify(invocation.positionals[1]!.slice(0, 60))}: words of [A-Za-z0-9_-] separated by dots, ` +
        'a word may also be * (one word) or # (zero or more); at most 255 characters',
    );
  }
  return pattern;
}

export async function topicsFollow(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const user = userOf(invocation);
  const pattern = patternOf(invocation);
  const config = loadOperatorConfig(env);
  const settings = queueSettingsOf(config);
  const queue = await withBroker(config.rabbitmqUrls, 'topics follow', async (session) => {
    try {
      await declareSharedTopology(() => session.channel(), settings);
      const inbox = await provisionInbox(() => session.channel(), user, settings);
      await followTopic(() => session.channel(), user, pattern);
      return inbox;
    } catch (error) {
      throw failure(`topics follow ${user} ${pattern} failed: ${errorMessage(error)}`, error);
    }
  });
  output.result({ user, queue, exchange: TOPIC_EXCHANGE, pattern, following: true }, () => [
    `${user} follows ${pattern} (${queue} bound to exchange ${TOPIC_EXCHANGE})`,
  ]);
  return 0;
}

export async function topicsUnfollow(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const user = userOf(invocation);
  const pattern = patternOf(invocation);
  const config = loadOperatorConfig(env);
  await withBroker(config.rabbitmqUrls, 'topics unfollow', async (session) => {
    try {
      await unfollowTopic(() => session.channel(), user, pattern);
    } catch (error) {
      throw failure(`topics unfollow ${user} ${pattern} failed: ${errorMessage(error)}`, error);
    }
  });
  output.result({ user, queue: inboxQueueName(user), exchange: TOPIC_EXCHANGE, pattern, following: false }, () => [
    `${user} no longer follows ${pattern}`,
  ]);
  return 0;
}

export async function topicsList(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const user = userOf(invocation);
  const config = loadOperatorConfig(env);
  let patterns: string[];
  try {
    patterns = await listFollowedPatterns(config.managementUrl, config.vhost, user);
  } catch (error) {
    throw failure(`topics list ${user} failed: ${errorMessage(error)}`, error);
  }
  output.result({ user, queue: inboxQueueName(user), exchange: TOPIC_EXCHANGE, patterns }, () =>
    patterns.length === 0 ? [`${user} follows no topic`] : [`${user} follows:`, ...patterns.map((pattern) => `  ${pattern}`)],
  );
  return 0;
}
