/**
 * `publish <user> <json|@file>`: one message through the producer library (persistent,
 * publisher confirms, messageId), after declaring the user's inbox. Prints the messageId,
 * never the body.
 */
import { readFile } from 'node:fs/promises';
import { Producer } from '../../amqp/producer.js';
import { queueSettingsOf } from '../../amqp/topology.js';
import type { Env } from '../../config.js';
import { ErrorCode, errorMessage, isRelayError } from '../../errors.js';
import { isValidUserId } from '../../protocol/user-id.js';
import { failure, usageError } from '../cli-error.js';
import { stringOption, type Invocation } from '../commands.js';
import type { Output } from '../io.js';
import { loadOperatorConfig } from '../operator-config.js';

// The control characters are the point: a message id must not carry them into logs and headers.
// eslint-disable-next-line no-control-regex
const MESSAGE_ID = /^[^\u0000-\u001f\u007f]{1,256}$/;

function isJsonType(contentType: string): boolean {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type.endsWith('+json');
}

async function readBody(data: string): Promise<Buffer> {
  if (!data.startsWith('@')) return Buffer.from(data, 'utf8');
  const path = data.slice(1);
  try {
    return await readFile(path);
  } catch (error) {
    throw usageError(`publish: cannot read ${path}: ${errorMessage(error)}`);
  }
}

export async function publish(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const [user, data] = invocation.positionals as [string, string];
  if (!isValidUserId(user)) throw usageError('publish: <user> must be 1-128 characters of [A-Za-z0-9._:@-]');
  const messageId = stringOption(invocation, 'message-id');
  if (messageId !== undefined && !MESSAGE_ID.test(messageId))
    throw usageError('publish: --message-id must be 1-256 characters without control characters');
  const contentType = stringOption(invocation, 'content-type') ?? 'application/json';
  const body = await readBody(data);
  if (isJsonType(contentType)) {
    try {
      JSON.parse(body.toString('utf8'));
    } catch {
      throw usageError(`publish: the body is not valid JSON (content type ${contentType}); use --content-type for other data`);
    }
  }
  const config = loadOperatorConfig(env);
  const producer = new Producer({
    url: config.rabbitmqUrls,
    heartbeatS: config.rabbitmqHeartbeatS,
    provision: queueSettingsOf(config),
    publishTimeoutMs: config.publishTimeoutMs,
  });
  let receipt;
  try {
    receipt = await producer.publish(user, body, { contentType, ...(messageId === undefined ? {} : { messageId }) });
  } catch (error) {
    const hint = isRelayError(error, ErrorCode.publishNacked) ? ' (run "inbox-relay inspect" to see whether the inbox is full)' : '';
    throw failure(`publish to ${user} failed: ${errorMessage(error)}${hint}`, error);
  } finally {
    await producer.close();
  }
  output.result({ user, messageId: receipt.messageId, contentType, bytes: body.length }, () => [
    `published ${receipt.messageId} to ${user} (${body.length} bytes, ${contentType}); RabbitMQ confirmed it`,
  ]);
  return 0;
}
