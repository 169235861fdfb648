/**
 * Frames of the inbox-relay v1 wire protocol: one JSON object per WebSocket text frame.
 * Decoding validates every client frame against a schema and never throws: it returns either
 * the typed frame or a reason the relay can put in its close frame.
 */
import { z } from 'zod';

export const SUBPROTOCOL = 'inbox-relay.v1';
export const STREAM_PATH = '/v1/stream';

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
});
export const ackSchema = z.object({ type: z.literal('ack'), seq });
export const nackSchema = z.object({ type: z.literal('nack'), seq, requeue: z.boolean() });
export const refreshSchema = z.object({ type: z.literal('refresh'), token });
/** A ping's `id` is echoed in the pong, so it is bounded: a short string or a finite number. */
export const pingSchema = z.object({ type: z.literal('ping'), id: z.union([z.string().max(64), z.number()]).optional() });

export const clientFrameSchema = z.discriminatedUnion('type', [helloSchema, ackSchema, nackSchema, refreshSchema, pingSchema]);

export type HelloFrame = z.infer<typeof helloSchema>;
export type AckFrame = z.infer<typeof ackSchema>;
export type NackFrame = z.infer<typeof nackSchema>;
export type RefreshFrame = z.infer<typeof refreshSchema>;
export type PingFrame = z.infer<typeof pingSchema>;
export type ClientFrame = z.infer<typeof clientFrameSchema>;

export interface WelcomeFrame {
  type: 'welcome';
  session: string;
  user: string;
  epoch: string;
  /** The seq after which this connection's delivery continues. */
  lastSeq: number;
  resumed: boolean;
  recovered: boolean;
  window: number;
  heartbeatMs: number;
}
export interface MsgFrame {
  type: 'msg';
  seq: number;
  id: string;
  ts: number;
  redelivered: boolean;
  contentType: string;
  data: unknown;
}
export interface ResetFrame {
  type: 'reset';
  epoch: string;
  lastSeq: number;
  reason: string;
}
export interface StatusFrame {
  type: 'status';
  state: 'ok' | 'degraded';
  reason?: string;
}
export interface ErrorFrame {
  type: 'error';
  code: string;
  message: string;
  /** The seq the error is about, when it is about one (an extension of v1; clients ignore it if unknown). */
  seq?: number;
}
export interface PongFrame {
  type: 'pong';
  id?: unknown;
}
export type ServerFrame = WelcomeFrame | MsgFrame | ResetFrame | StatusFrame | ErrorFrame | PongFrame;

export type DecodeResult<T> = { ok: true; frame: T } | { ok: false; reason: string };

function describeIssues(error: z.ZodError): string {
  const first = error.issues[0];
  if (!first) return 'invalid frame';
  const path = first.path.length > 0 ? first.path.join('.') : 'frame';
  return `${path}: ${first.message}`.slice(0, 100);
}

function parseJson(text: string): DecodeResult<unknown> {
  try {
    return { ok: true, frame: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: 'frame is not valid JSON' };
  }
}

/** Decodes one client frame. Unknown fields are dropped; unknown frame types are refused. */
export function decodeClientFrame(text: string): DecodeResult<ClientFrame> {
  const json = parseJson(text);
  if (!json.ok) return json;
  const parsed = clientFrameSchema.safeParse(json.frame);
  return parsed.success ? { ok: true, frame: parsed.data } : { ok: false, reason: describeIssues(parsed.error) };
}

const serverFrameSchema = z.discriminatedUnion('type', [
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
    data: z.unknown(),
  }),
  z.object({ type: z.literal('reset'), epoch: z.string(), lastSeq: z.number().int().min(0), reason: z.string() }),
  z.object({ type: z.literal('status'), state: z.enum(['ok', 'degraded']), reason: z.string().optional() }),
  z.object({ type: z.literal('error'), code: z.string(), message: z.string(), seq: z.number().int().optional() }),
  z.object({ type: z.literal('pong'), id: z.unknown().optional() }),
]);

/** Decodes one server frame (used by the client SDK and the tests). */
export function decodeServerFrame(text: string): DecodeResult<ServerFrame> {
  const json = parseJson(text);
  if (!json.ok) return json;
  const parsed = serverFrameSchema.safeParse(json.frame);
  return parsed.success ? { ok: true, frame: parsed.data } : { ok: false, reason: describeIssues(parsed.error) };
}

/** Encodes a server or client frame. `msg` frames are built by the relay from pre-encoded parts. */
export function encodeFrame(frame: ServerFrame | ClientFrame): string {
  return JSON.stringify(frame);
}

/** Error codes carried by `error` frames (non-fatal). */
export const ErrorFrameCode = {
  unknownSeq: 'RELAY_ERR_UNKNOWN_SEQ',
  duplicateHello: 'RELAY_ERR_DUPLICATE_HELLO',
  resumeAhead: 'RELAY_ERR_RESUME_AHEAD',
  nackLimit: 'RELAY_ERR_NACK_LIMIT',
} as const;
