/**
 * The body of `POST /v1/publish` (docs/publish-api.openapi.yaml), checked with zod and turned into
 * the bytes and properties of the AMQP messages to publish. No I/O.
 *
 * A message is `{user, data, messageId?, contentType?}`; a request holds one, or a batch
 * `{messages: [...]}` of 1 to PUBLISH_MAX_BATCH. Under a JSON content type (the default,
 * `application/json`, or any `*\/*+json`) `data` is any JSON value and is published as its JSON
 * text; under any other type `data` is a string of base64 and is published as those bytes. Either
 * way a client receives `data` as the producer sent it (docs/PROTOCOL.md 2.3: non-JSON bodies reach
 * clients as base64). Numbers are read as JSON.parse reads them (64-bit floats): send integers
 * beyond 2^53 as strings.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { isValidUserId } from '../protocol/user-id.js';

/** A message ready to publish: the bytes and properties the producer library sends. */
export interface PublishMessage {
  user: string;
  body: Buffer;
  messageId: string;
  contentType: string;
}

export type ParsedRequest = { ok: true; batch: boolean; messages: PublishMessage[] } | { ok: false; status: 400 | 413; reason: string };

export interface RequestLimits {
  /** PUBLISH_MAX_BATCH. */
  maxBatch: number;
  /** MAX_MESSAGE_BYTES: a body the relay would dead-letter as too-large is refused here (413). */
  maxMessageBytes: number;
}

const DEFAULT_CONTENT_TYPE = 'application/json';
// The messageId rule of message-codec.ts (a relay dead-letters anything else), plus AMQP's limit
// of 255 bytes on a short string. Control characters are what it must not hold.
// eslint-disable-next-line no-control-regex -- the control characters in this class are deliberate
const NO_CONTROLS = /^[^\u0000-\u001f\u007f]+$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const shortString = (what: string) =>
  z
    .string({ message: `${what} must be a string` })
    .min(1, `${what} must not be empty`)
    .regex(NO_CONTROLS, `${what} must not contain control characters`)
    .refine((value) => Buffer.byteLength(value) <= 255, `${what} must be at most 255 bytes of UTF-8`);

const messageSchema = z.strictObject(
  {
    user: z.string({ message: 'user must be a string' }).refine(isValidUserId, 'user must be 1-128 characters of [A-Za-z0-9._:@-]'),
    data: z.json({ message: 'data must be a JSON value' }),
    messageId: shortString('messageId').optional(),
    contentType: shortString('contentType').optional(),
  },
  { message: 'a message is an object {user, data, messageId?, contentType?} with no other fields' },
);

type MessageInput = z.infer<typeof messageSchema>;

/** Whether a content type is JSON (the relay's rule, message-codec.ts). */
export function isJsonContentType(contentType: string): boolean {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type.endsWith('+json');
}

/** Where in the body an issue is, as a JSON path: `messages[2].user`. */
function pathOf(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (text, key) => (typeof key === 'number' ? `${text}[${key}]` : text ? `${text}.${String(key)}` : String(key)),
    '',
  );
}

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid request';
  const where = pathOf(issue.path);
  return where ? `${where}: ${issue.message}` : issue.message;
}

/** The bytes of one message's body, or why it cannot be published. */
function encode(input: MessageInput, where: string, limits: RequestLimits): { body: Buffer } | { status: 400 | 413; reason: string } {
  const contentType = input.contentType ?? DEFAULT_CONTENT_TYPE;
  let body: Buffer;
  if (isJsonContentType(contentType)) {
    body = Buffer.from(JSON.stringify(input.data));
  } else {
    if (typeof input.data !== 'string' || !BASE64.test(input.data) || input.data.length % 4 !== 0) {
      return { status: 400, reason: `${where}data: must be a base64 string under the non-JSON content type ${contentType}` };
    }
    body = Buffer.from(input.data, 'base64');
  }
  if (body.length > limits.maxMessageBytes) {
    return { status: 413, reason: `${where}data: ${body.length} bytes exceed MAX_MESSAGE_BYTES (${limits.maxMessageBytes})` };
  }
  return { body };
}

/**
 * Checks a request body (already parsed from JSON) and builds its messages, in order; a message
 * without a messageId gets a random UUID. Any problem refuses the whole request: 400 with the
 * first problem found (its JSON path), or 413 for a message over MAX_MESSAGE_BYTES.
 */
export function parsePublishRequest(value: unknown, limits: RequestLimits): ParsedRequest {
  const isBatch = typeof value === 'object' && value !== null && !Array.isArray(value) && 'messages' in value;
  const schema = isBatch
    ? z.strictObject(
        {
          messages: z
            .array(messageSchema, { message: 'messages must be an array' })
            .min(1, 'messages must hold at least one message')
            .max(limits.maxBatch, `messages must hold at most ${limits.maxBatch} messages (PUBLISH_MAX_BATCH)`),
        },
        { message: 'a batch is an object {messages: [...]} with no other fields' },
      )
    : messageSchema.transform((message) => ({ messages: [message] }));
  const parsed = schema.safeParse(value);
  if (!parsed.success) return { ok: false, status: 400, reason: firstIssue(parsed.error) };
  const messages: PublishMessage[] = [];
  for (const [index, input] of parsed.data.messages.entries()) {
    const encoded = encode(input, isBatch ? `messages[${index}].` : '', limits);
    if (!('body' in encoded)) return { ok: false, ...encoded };
    messages.push({
      user: input.user,
      body: encoded.body,
      messageId: input.messageId ?? randomUUID(),
      contentType: input.contentType ?? DEFAULT_CONTENT_TYPE,
    });
  }
  return { ok: true, batch: isBatch, messages };
}
