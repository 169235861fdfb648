/**
 * The seal that makes an operator's replay of a dead letter count as a replay.
 *
 * A replayed copy keeps its messageId, so without a mark the relay would take it for the message
 * it numbered before and not deliver it again; the mark (`x-inbox-relay-replay`, a count) makes
 * the relay number it as a new message. Anyone who may publish to `inbox` could set that mark
 * too and have a message delivered again under a messageId the user already got, so the relay
 * honours it only with a seal: an HMAC-SHA256, keyed with `REPLAY_KEY`, over the user, the
 * messageId, the replay count and a digest of the body. `inbox-relay dlq replay` seals each copy;
 * every relay node checks the seal with the same key.
 *
 * This module guarantees:
 * - a seal is valid for exactly one (user, messageId, count, body): copied onto another user's
 *   message, another count or another body, it fails. A copy of a sealed replay published again
 *   is numbered under the same replay key as the original and is deduplicated like any copy;
 * - a seal is made with the first key and checked against every key given (the current one and,
 *   while keys are being rotated, the previous one), in constant time;
 * - the fields are joined with `\n`, which none of them can contain (user ids and messageIds
 *   exclude control characters, the count is a number, the digest hex), so no two inputs share
 *   the signed text.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** Set by `inbox-relay dlq replay`: the replay count (1, 2, ...). */
export const REPLAY_HEADER = 'x-inbox-relay-replay';
/** The seal of a replay (base64url HMAC-SHA256), next to {@link REPLAY_HEADER}. */
export const REPLAY_SEAL_HEADER = 'x-inbox-relay-replay-seal';
/** Why a replay header was not honoured (the message is then deduplicated by its messageId). */
export type ReplayRefusal = 'no-key' | 'no-seal' | 'bad-seal';

/** Names this use of the key, so that a MAC made for something else never passes as a seal. */
const DOMAIN = 'inbox-relay replay seal v1';
const MAC_BYTES = 32;

export interface ReplayClaim {
  user: string;
  messageId: string;
  count: number;
  body: Buffer;
}

function mac(key: Buffer, claim: ReplayClaim): Buffer {
  const digest = createHash('sha256').update(claim.body).digest('hex');
  return createHmac('sha256', key).update(`${DOMAIN}\n${claim.user}\n${claim.messageId}\n${claim.count}\n${digest}`).digest();
}

export class ReplaySeal {
  private readonly keys: Buffer[];

  /** `keys[0]` seals; all of them are accepted. Throws when there is none. */
  constructor(keys: readonly string[]) {
    if (keys.length === 0) throw new Error('a replay seal needs at least one key');
    this.keys = keys.map((key) => Buffer.from(key, 'utf8'));
  }

  /**
   * Names the sealing key without giving it away (a MAC over a fixed text), so that an operator
   * can check that the CLI and the relays hold the same key: relays log it at start, `dlq replay`
   * prints it.
   */
  fingerprint(): string {
    return createHmac('sha256', this.keys[0]!).update(`${DOMAIN}\nfingerprint`).digest('base64url').slice(0, 12);
  }

  seal(claim: ReplayClaim): string {
    return mac(this.keys[0]!, claim).toString('base64url');
  }

  verify(claim: ReplayClaim, seal: unknown): boolean {
    if (typeof seal !== 'string') return false;
    const given = Buffer.from(seal, 'base64url');
    if (given.length !== MAC_BYTES) return false;
    // Every key is tried, so the time taken does not say which one matched.
    let valid = false;
    for (const key of this.keys) valid = timingSafeEqual(mac(key, claim), given) || valid;
    return valid;
  }
}

/** The replay count a header value stands for: a whole number from 1, else 0 (not a replay). */
export function replayCountOf(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : 0;
}
