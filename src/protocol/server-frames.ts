/**
 * The client SDK's check of the frames the relay sends (PROTOCOL 3.5), written by hand so that a
 * browser bundle carries a table of field rules instead of a schema library (zod alone made the
 * SDK's bundle twenty times larger). The relay's reference schema for the same frames is
 * `serverFrameSchema` in frames.ts; test/unit/frames-properties.test.ts checks that both accept
 * and reject exactly the same values, with the same result.
 *
 * Guarantees, as the schema's: a frame is accepted when it is a JSON object whose `type` is a
 * server frame type and whose fields follow the rules below; the result is a fresh plain object
 * holding only the fields its type knows (unknown fields are dropped); a refusal names the first
 * field that breaks a rule, in at most 100 characters.
 */
import { parseFrameJson, type DecodeResult, type ServerFrame } from './frame-types.js';

interface Rule {
  /** Said in a refusal: "welcome.lastSeq: expected <this>". */
  readonly expected: string;
  readonly test: (value: unknown) => boolean;
}
/** An optional field may be absent; when present it must pass `test`. */
type OptionalRule = Rule & { readonly optional: true };

type ServerFrameType = ServerFrame['type'];
type FrameOf<T extends ServerFrameType> = Extract<ServerFrame, { type: T }>;
/** One rule per field of the frame type (the compiler checks none is missing), optional exactly where the type says so. */
type RulesOf<F> = {
  readonly [K in Exclude<keyof F, 'type'>]-?: Partial<Pick<F, K>> extends Pick<F, K> ? OptionalRule : Rule & { readonly optional?: never };
};

const text: Rule = { expected: 'a string', test: (value) => typeof value === 'string' };
const flag: Rule = { expected: 'a boolean', test: (value) => typeof value === 'boolean' };
/** An integer within the safe range and the bounds given (JSON can spell any number; 1e400 is Infinity). */
const integer = (min: number): Rule => ({
  expected: min === -Number.MAX_SAFE_INTEGER ? 'a safe integer' : `an integer from ${min} to 2^53-1`,
  test: (value) => Number.isSafeInteger(value) && (value as number) >= min,
});
const finite: Rule = { expected: 'a finite number', test: (value) => typeof value === 'number' && Number.isFinite(value) };
const present: Rule = { expected: 'a value', test: () => true };
const optional = (rule: Rule): OptionalRule => ({ ...rule, optional: true });

const RULES: { readonly [T in ServerFrameType]: RulesOf<FrameOf<T>> } = {
  welcome: {
    session: text,
    user: text,
    epoch: text,
    lastSeq: integer(0),
    resumed: flag,
    recovered: flag,
    window: integer(1),
    heartbeatMs: integer(0),
  },
  msg: { seq: integer(1), id: text, ts: finite, redelivered: flag, contentType: text, topic: optional(text), data: present },
  reset: { epoch: text, lastSeq: integer(0), reason: text },
  status: {
    state: { expected: '"ok" or "degraded"', test: (value) => value === 'ok' || value === 'degraded' },
    reason: optional(text),
  },
  error: { code: text, message: text, seq: optional(integer(-Number.MAX_SAFE_INTEGER)) },
  pong: { id: optional(present) },
};

const TYPES = Object.keys(RULES);
const isFrameType = (value: unknown): value is ServerFrameType => typeof value === 'string' && TYPES.includes(value);
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Checks a parsed JSON value against the rules of its frame type and copies out the known fields. */
function checkServerFrame(value: unknown): DecodeResult<ServerFrame> {
  if (!isRecord(value)) return { ok: false, reason: 'frame: expected a JSON object' };
  const type = value.type;
  if (!isFrameType(type)) return { ok: false, reason: `type: expected one of ${TYPES.join(', ')}` };
  const frame: Record<string, unknown> = { type };
  for (const [field, rule] of Object.entries(RULES[type] as Record<string, Rule & { optional?: true }>)) {
    // Own fields only: a name found on Object.prototype is not a field the relay sent.
    const has = Object.prototype.hasOwnProperty.call(value, field);
    if (!has && rule.optional) continue;
    const fieldValue = has ? value[field] : undefined;
    if (!has || !rule.test(fieldValue)) return { ok: false, reason: `${type}.${field}: expected ${rule.expected}`.slice(0, 100) };
    frame[field] = fieldValue;
  }
  // The rules list every field of the type, so the copy is the frame the type describes.
  return { ok: true, frame: frame as unknown as ServerFrame };
}

/** Decodes one server frame (the client SDK reads every relay frame through this). */
export function decodeServerFrame(text: string): DecodeResult<ServerFrame> {
  const json = parseFrameJson(text);
  return json.ok ? checkServerFrame(json.frame) : json;
}
