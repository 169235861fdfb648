/**
 * The relay's schemas for the inbox-relay v1 frames (one JSON object per WebSocket text frame).
 * Decoding validates every client frame against a schema and never throws: it returns either
 * the typed frame or a reason the relay can put in its close frame.
 *
 * The frame types are declared without zod in frame-types.ts, so the client SDK can ship them to
 * browsers; the schemas here must parse to exactly those types (test/unit/frames-properties.test.ts
 * checks it at compile time). `serverFrameSchema` is the reference for the SDK's hand-written
 * check of server frames (server-frames.ts): the same test checks that both agree on every value.
 * This module re-exports the zod-free ones, so that server code keeps importing frames from here.
 */
import { z } from 'zod';
import { MAX_DEVICE_LENGTH, parseFrameJson, type ClientFrame, type DecodeResult } from './frame-types.js';

export { SUBPROTOCOL, STREAM_PATH, MAX_DEVICE_LENGTH, ErrorFrameCode, encodeFrame } from './frame-types.js';
export type * from './frame-types.js';
export { decodeServerFrame } from './server-frames.js';

const seq = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const token = z.string().min(1).max(16_384);

export const helloSchema = z.object({
  type: z.literal('hello'),
  token: token.optional(),
  resume: z
    .object({
      epoch: z.string().min(1).max(128),
      lastSeq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    })
    .optional(),
  window: z.number().int().min(1).max(65_535).optional(),
  device: z.string().min(1, 'must not be empty').max(MAX_DEVICE_LENGTH, `at most ${MAX_DEVICE_LENGTH} characters`).optional(),
});
export const ackSchema = z.object({ type: z.literal('ack'), seq });
export const nackSchema = z.object({ type: z.literal('nack'), seq, requeue: z.boolean() });
export const refreshSchema = z.object({ type: z.literal('refresh'), token });
/** A ping's `id` is echoed in the pong, so it is bounded: a short string or a finite number. */
export const pingSchema = z.object({ type: z.literal('ping'), id: z.union([z.string().max(64), z.number()]).optional() });

export const clientFrameSchema = z.discriminatedUnion('type', [helloSchema, ackSchema, nackSchema, refreshSchema, pingSchema]);

function describeIssues(error: z.ZodError): string {
  const first = error.issues[0];
  if (!first) return 'invalid frame';
  const path = first.path.length > 0 ? first.path.join('.') : 'frame';
  return `${path}: ${first.message}`.slice(0, 100);
}

/** Decodes one client frame. Unknown fields are dropped; unknown frame types are refused. */
export function decodeClientFrame(text: string): DecodeResult<ClientFrame> {
  const json = parseFrameJson(text);
  if (!json.ok) return json;
  const parsed = clientFrameSchema.safeParse(json.frame);
  return parsed.success ? { ok: true, frame: parsed.data } : { ok: false, reason: describeIssues(parsed.error) };
}

/**
 * The server frames as a schema (PROTOCOL 3.5): the reference the SDK's hand-written check
 * (server-frames.ts) is tested against. The relay builds these frames and never parses them.
 */
export const serverFrameSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('welcome'),
    session: z.string(),
    user: z.string(),
    epoch: z.string(),
    lastSeq: z.number().int().min(0),
    resumed: z.boolean(),
    recovered: z.boolean(),
    window: z.number().int().min(1),
    heartbeatMs: z.number().int().min(0),
  }),
  z.object({
    type: z.literal('msg'),
    seq,
    id: z.string(),
    ts: z.number(),
    redelivered: z.boolean(),
    contentType: z.string(),
    topic: z.string().optional(),
    data: z.unknown(),
  }),
  z.object({ type: z.literal('reset'), epoch: z.string(), lastSeq: z.number().int().min(0), reason: z.string() }),
  z.object({ type: z.literal('status'), state: z.enum(['ok', 'degraded']), reason: z.string().optional() }),
  z.object({ type: z.literal('error'), code: z.string(), message: z.string(), seq: z.number().int().optional() }),
  z.object({ type: z.literal('pong'), id: z.unknown().optional() }),
]);
