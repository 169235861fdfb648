/**
 * The frames of the inbox-relay v1 wire protocol as TypeScript types, the names both sides use,
 * and the JSON codec steps every frame goes through. Nothing here validates and nothing imports a
 * library: the client SDK ships this file to browsers as it is. The relay's schemas for client
 * frames (frames.ts) and the SDK's checks of server frames (server-frames.ts) are tested to
 * accept exactly these shapes.
 */

export const SUBPROTOCOL = 'inbox-relay.v1';
export const STREAM_PATH = '/v1/stream';
/** The longest `device` label a `hello` may carry, in characters. */
export const MAX_DEVICE_LENGTH = 64;

// Client frames (PROTOCOL 3.4) ---------------------------------------------------------------

export interface HelloFrame {
  type: 'hello';
  token?: string;
  resume?: { epoch: string; lastSeq: number };
  window?: number;
  /** A label the client picks for itself, shown in presence (v1, addition 11): 1-64 characters. */
  device?: string;
}
export interface AckFrame {
  type: 'ack';
  seq: number;
}
export interface NackFrame {
  type: 'nack';
  seq: number;
  requeue: boolean;
}
export interface RefreshFrame {
  type: 'refresh';
  token: string;
}
export interface PingFrame {
  type: 'ping';
  /** Echoed in the pong, so bounded: at most 64 characters, or a finite number. */
  id?: string | number;
}
export type ClientFrame = HelloFrame | AckFrame | NackFrame | RefreshFrame | PingFrame;

// Server frames (PROTOCOL 3.5) ---------------------------------------------------------------

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
  /**
   * The topic (routing key) the message was published to, when it came through the topic
   * exchange `inbox.topics` rather than straight to the user's inbox (v1, addition 10).
   */
  topic?: string;
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

/** Error codes carried by `error` frames (non-fatal). */
export const ErrorFrameCode = {
  unknownSeq: 'RELAY_ERR_UNKNOWN_SEQ',
  duplicateHello: 'RELAY_ERR_DUPLICATE_HELLO',
  resumeAhead: 'RELAY_ERR_RESUME_AHEAD',
  nackLimit: 'RELAY_ERR_NACK_LIMIT',
} as const;

// Codec steps --------------------------------------------------------------------------------

/** What a decoder returns: the typed frame, or a reason short enough for a close frame. Never throws. */
export type DecodeResult<T> = { ok: true; frame: T } | { ok: false; reason: string };

/** The first step of every decoder: the frame's text as a JSON value. */
export function parseFrameJson(text: string): DecodeResult<unknown> {
  try {
    return { ok: true, frame: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: 'frame is not valid JSON' };
  }
}

/** Encodes a server or client frame. `msg` frames are built by the relay from pre-encoded parts. */
export function encodeFrame(frame: ServerFrame | ClientFrame): string {
  return JSON.stringify(frame);
}
