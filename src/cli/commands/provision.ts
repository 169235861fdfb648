/** `provision <user>`: the shared topology and the user's inbox, with the configured queue settings. */
import { declareSharedTopology, inboxQueueArguments, provisionInbox, queueSettingsOf } from '../../amqp/topology.js';
import type { Env } from '../../config.js';
import { errorMessage } from '../../errors.js';
import { isValidUserId } from '../../protocol/user-id.js';
import { failure, usageError } from '../cli-error.js';
import { withBroker } from '../broker.js';
import type { Invocation } from '../commands.js';
import type { Output } from '../io.js';
import { loadOperatorConfig } from '../operator-config.js';

export async function provision(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const user = invocation.positionals[0]!;
  if (!isValidUserId(user)) throw usageError('provision: <user> must be 1-128 characters of [A-Za-z0-9._:@-]');
  const config = loadOperatorConfig(env);
  const settings = queueSettingsOf(config);
  const mismatched: string[] = [];
  const hooks = { onQueueMismatch: (queue: string) => void mismatched.push(queue) };
  const queue = await withBroker(config.rabbitmqUrls, 'provision', async (session) => {
    try {
      await declareSharedTopology(() => session.channel(), settings, hooks);
      return await provisionInbox(() => session.channel(), user, settings, hooks);
    } catch (error) {
      throw failure(`provision ${user} failed: ${errorMessage(error)}`, error);
    }
  });
  const args = inboxQueueArguments(settings);
  output.result({ user, queue, arguments: args, mismatched }, () => [
    `provisioned ${queue}, bound to exchange inbox with key ${user}`,
    `arguments: ${JSON.stringify(args)}`,
    ...mismatched.map((name) => `warning: ${name} exists with other arguments and was kept as it is`),
  ]);
  return 0;
}
