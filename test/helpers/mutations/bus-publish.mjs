// A mutation of the node bus for the cluster mutation tests, preloaded into relay children with
// `node --import <this file>`. It patches RedisNodeBus.prototype.publish of the compiled relay
// (the same module instance the relay loads: dist/src/cluster/redis-node-bus.js), so that some
// messages are never sent, and says so on stderr (one JSON line per kind and user when it first
// drops, and one at load) for the test to confirm that the mutation took effect.
// INBOX_RELAY_TEST_MUTATION selects what is dropped:
//   drop-first-numbered  the first `numbered` message this node publishes about each user
//   drop-all             every message
//   drop-acked           every `acked` message
import { RedisNodeBus } from '../../../dist/src/cluster/redis-node-bus.js';

const MUTATIONS = new Set(['drop-first-numbered', 'drop-all', 'drop-acked']);
const mutation = process.env.INBOX_RELAY_TEST_MUTATION;
if (!MUTATIONS.has(mutation)) throw new Error(`INBOX_RELAY_TEST_MUTATION must be one of ${[...MUTATIONS].join(', ')}; got ${mutation}`);
if (typeof RedisNodeBus?.prototype?.publish !== 'function') throw new Error('RedisNodeBus.prototype.publish is not a function');

const report = (fields) => process.stderr.write(`${JSON.stringify({ msg: 'test mutation', mutation, ...fields })}\n`);
/** Users whose first `numbered` message this node already dropped. */
const numberedDropped = new Set();
/** `kind/user` pairs already reported, so that the output stays small. */
const reported = new Set();

function drops(user, message) {
  switch (mutation) {
    case 'drop-all':
      return true;
    case 'drop-acked':
      return message.kind === 'acked';
    case 'drop-first-numbered':
      if (message.kind !== 'numbered' || numberedDropped.has(user)) return false;
      numberedDropped.add(user);
      return true;
  }
  return false;
}

const publish = RedisNodeBus.prototype.publish;
RedisNodeBus.prototype.publish = async function mutatedPublish(user, message) {
  if (!drops(user, message)) return publish.call(this, user, message);
  const key = `${message.kind}/${user}`;
  if (!reported.has(key)) {
    reported.add(key);
    report({ event: 'dropped', kind: message.kind, user });
  }
};
report({ event: 'armed' });
