/**
 * The messages nodes send each other about one user, and their JSON encoding. Decoding validates
 * every incoming message against a schema and never throws: it returns the typed message or a
 * reason (another node, another version or anything else that can PUBLISH may send garbage).
 */
import { z } from 'zod';

/** A node id: 1-64 characters of `[A-Za-z0-9._:-]` (NODE_ID; see src/config.ts). */
export const NODE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

const seq = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const base = {
  from: z.string().regex(NODE_ID_PATTERN),
  epoch: z.string().min(1).max(128),
};

/** One message of a `numbered` run. */
export interface NumberedEntry {
  seq: number;
  /** The pre-encoded `msg` frame fields after `seq` and `redelivered` (see src/delivery/message-codec.ts). */
  fragment: string;
  redelivered: boolean;
}

const numberedSchema = z.object({
  kind: z.literal('numbered'),
  ...base,
  entries: z
    .array(z.object({ seq, fragment: z.string(), redelivered: z.boolean() }))
    .min(1)
    .max(10_000),
});
const ackedSchema = z.object({ kind: z.literal('acked'), ...base, seq });
const deadLetterSchema = z.object({ kind: z.literal('dead-letter'), ...base, seq, reason: z.string().max(1_000) });
const mark = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const headSchema = z.object({ kind: z.literal('head'), ...base, seq: mark, acked: mark.optional(), hello: z.literal(true).optional() });

export const busMessageSchema = z.discriminatedUnion('kind', [numberedSchema, ackedSchema, deadLetterSchema, headSchema]);

/** The sender (active for the user) numbered these seqs, in this order, in `epoch`. */
export type NumberedMessage = z.infer<typeof numberedSchema>;
/** A connection on the sender acknowledged every seq up to `seq` (cumulative). */
export type AckedMessage = z.infer<typeof ackedSchema>;
/** A client on the sender asked for `seq` to be dead-lettered (`nack` with `requeue:false`, or past the nack limit). */
export type DeadLetterMessage = z.infer<typeof deadLetterSchema>;
/**
 * The sender has a stream for the user: its head (last seq it knows numbered) is `seq` and its
 * acked mark `acked`. A heartbeat to find lost notifications by; with `hello` the sender just
 * opened its stream (or its bus reconnected) and every receiver answers with its own `head`.
 */
export type HeadMessage = z.infer<typeof headSchema>;
export type BusMessage = z.infer<typeof busMessageSchema>;
export type BusMessageKind = BusMessage['kind'];

type WithoutFrom<T> = T extends unknown ? Omit<T, 'from'> : never;
/** A message as a publisher hands it to the bus, which stamps `from` with its own node id. */
export type OutgoingBusMessage = WithoutFrom<BusMessage>;

export type DecodedBusMessage = { ok: true; message: BusMessage } | { ok: false; reason: string };

export function encodeBusMessage(from: string, message: OutgoingBusMessage): string {
  return JSON.stringify({ ...message, from });
}

/** The message in `payload`, or why it is not one. Never throws. */
export function decodeBusMessage(payload: string): DecodedBusMessage {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const parsed = busMessageSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: issue ? `${issue.path.join('.') || 'message'}: ${issue.message}` : 'invalid message' };
  }
  return { ok: true, message: parsed.data };
}
