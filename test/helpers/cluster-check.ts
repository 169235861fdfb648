/**
 * The cluster tests' verdict, as a pure function of what was recorded: counts per kind of
 * failure (each 0 when the guarantee held) and a few examples of each, so that one run can be
 * compared with another (a mutation must move some count off 0). Counted per identity (a
 * logical client that keeps its position across connections), except where it says per user:
 * - lost: confirmed messages of the identity's user it never processed;
 * - unflaggedDuplicates: a `msg` whose seq (within its epoch) or message id the identity had
 *   received before, without `redelivered: true`;
 * - orderViolations: what the client saw on one connection (a seq that is not the previous plus
 *   one, a welcome that does not continue the resumed position), plus processed seqs that do not
 *   climb by one within an epoch;
 * - stalled: identities that had not processed every confirmed message of their user by the
 *   settle deadline;
 * - seqMismatches (per user): message ids received with more than one seq, and seqs received with
 *   more than one message id, over all of the user's identities;
 * - resets: `reset` frames (nothing in these tests loses the numbering);
 * - queuesNotEmpty (per user): inbox queues still holding messages once every client acked
 *   everything (an ack that never reached the node holding the message), or whose count could
 *   not be read.
 */
import type { IdentityLog } from './cluster-client.js';

export interface ClusterCheckInput {
  /** The messageIds RabbitMQ confirmed, by user. */
  readonly confirmed: ReadonlyMap<string, readonly string[]>;
  readonly identities: readonly IdentityLog[];
  /** Each user's queue `messages` after acks settled; undefined when the count could not be read. Omitted: not checked. */
  readonly queueMessages?: ReadonlyMap<string, number | undefined>;
}

export interface ClusterCounts {
  lost: number;
  unflaggedDuplicates: number;
  orderViolations: number;
  stalled: number;
  seqMismatches: number;
  resets: number;
  queuesNotEmpty: number;
}

export interface ClusterReport {
  readonly counts: ClusterCounts;
  /** Up to a few examples per count, for the failure message. */
  readonly examples: readonly string[];
}

const EXAMPLES_PER_KIND = 3;

export const ZERO_COUNTS: Readonly<ClusterCounts> = Object.freeze({
  lost: 0,
  unflaggedDuplicates: 0,
  orderViolations: 0,
  stalled: 0,
  seqMismatches: 0,
  resets: 0,
  queuesNotEmpty: 0,
});

export function allZero(counts: ClusterCounts): boolean {
  return Object.values(counts).every((count) => count === 0);
}

export function checkCluster(input: ClusterCheckInput): ClusterReport {
  const counts: ClusterCounts = { ...ZERO_COUNTS };
  const examples = new Map<keyof ClusterCounts, string[]>();
  const note = (kind: keyof ClusterCounts, example: string, by = 1): void => {
    counts[kind] += by;
    const list = examples.get(kind) ?? [];
    if (list.length < EXAMPLES_PER_KIND) list.push(example);
    examples.set(kind, list);
  };

  for (const identity of input.identities) {
    const confirmed = input.confirmed.get(identity.user) ?? [];
    const processedIds = new Set(identity.processed.map((record) => record.id));
    const missing = confirmed.filter((id) => !processedIds.has(id));
    if (missing.length > 0) {
      note('lost', `${identity.identity}: ${missing.length} of ${confirmed.length} never processed, first ${missing[0]}`, missing.length);
      note('stalled', `${identity.identity}: stopped at seq ${identity.processed.at(-1)?.seq ?? 0}`);
    }

    const seenSeqs = new Set<string>();
    const seenIds = new Set<string>();
    for (const record of identity.received) {
      const key = `${record.epoch}/${record.seq}`;
      if ((seenSeqs.has(key) || seenIds.has(record.id)) && !record.redelivered) {
        note('unflaggedDuplicates', `${identity.identity}: seq ${key} (${record.id}) again on connection ${record.connection}`);
      }
      seenSeqs.add(key);
      seenIds.add(record.id);
    }

    for (const violation of identity.orderViolations) note('orderViolations', violation);
    let previous: { epoch: string; seq: number } | undefined;
    for (const record of identity.processed) {
      if (previous?.epoch === record.epoch && record.seq !== previous.seq + 1) {
        note('orderViolations', `${identity.identity}: processed seq ${record.seq} after ${previous.seq}`);
      }
      previous = record;
    }
    if (identity.resets > 0) note('resets', `${identity.identity}: ${identity.resets} reset(s)`, identity.resets);
  }

  for (const [user, identities] of byUser(input.identities)) {
    const seqOfId = new Map<string, string>();
    const idOfSeq = new Map<string, string>();
    const conflicting = new Set<string>();
    for (const record of identities.flatMap((identity) => identity.received)) {
      const key = `${record.epoch}/${record.seq}`;
      const knownSeq = seqOfId.get(record.id) ?? key;
      const knownId = idOfSeq.get(key) ?? record.id;
      seqOfId.set(record.id, knownSeq);
      idOfSeq.set(key, knownId);
      if (knownSeq !== key && !conflicting.has(`id ${record.id}`)) {
        conflicting.add(`id ${record.id}`);
        note('seqMismatches', `${user}: ${record.id} as seq ${knownSeq} and ${key}`);
      }
      if (knownId !== record.id && !conflicting.has(`seq ${key}`)) {
        conflicting.add(`seq ${key}`);
        note('seqMismatches', `${user}: seq ${key} carried ${knownId} and ${record.id}`);
      }
    }
  }

  for (const [user, messages] of input.queueMessages ?? []) {
    if (messages !== 0) note('queuesNotEmpty', `inbox.${user}: ${messages ?? 'unknown'} message(s) left`);
  }

  return { counts, examples: [...examples.values()].flat() };
}

function byUser(identities: readonly IdentityLog[]): Map<string, IdentityLog[]> {
  const users = new Map<string, IdentityLog[]>();
  for (const identity of identities) users.set(identity.user, [...(users.get(identity.user) ?? []), identity]);
  return users;
}
