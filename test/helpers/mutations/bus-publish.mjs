// A mutation of the node bus for the cluster mutation tests, preloaded into relay children with
// `node --import <this file>`. It patches RedisNodeBus.prototype.publish of the compiled relay
// (the same module instance the relay loads: dist/src/cluster/redis-node-bus.js), so that some
// messages are never sent, and says so on stderr (one JSON line per kind and user when it first
// drops, and one at load) for the test to confirm that the mutation took effect.
// INBOX_RELAY_TEST_MUTATION selects what is dropped:
//   drop-first-numbered  the first `numbered` message this node publishes about each user
//   drop-all             every message
//   drop-acked           every ack that would cross to another node: each `acked` message, and the
//                        acked mark carried by `head` heartbeats (which alone would heal the loss)
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

/** The message as sent under the mutation: a heartbeat loses its acked mark under drop-acked. */
function rewrite(message) {
  if (mutation !== 'drop-acked' || message.kind !== 'head' || message.acked === undefined) return message;
  const { acked: _dropped, ...rest } = message;
  return rest;
}

const publish = RedisNodeBus.prototype.publish;
RedisNodeBus.prototype.publish = async function mutatedPublish(user, message) {
  if (!drops(user, message)) return publish.call(this, user, rewrite(message));
  const key = `${message.kind}/${user}`;
  if (!reported.has(key)) {
    reported.add(key);
    report({ event: 'dropped', kind: message.kind, user });
  }
};
report({ event: 'armed' });
