/**
 * The handshake as the client sees it: the `hello` a connection opens with, and what the
 * relay's `welcome` means to the application. Pure: the client adopts the position and emits.
 *
 * Guarantees: `hello.resume` carries only the epoch and seq (never the stored user); a welcome
 * reports a new epoch as a `reset` once per connection (not again when a `reset` frame on that
 * connection already did), and reports a `gap` only for loss within the epoch the client held.
 */
import type { HelloFrame, WelcomeFrame } from '../protocol/frame-types.js';
import type { GapEvent, OpenEvent, ResetEvent } from './events.js';
import type { Position } from './position-store.js';
import type { Adoption } from './position-tracker.js';

/** The `hello` for `token`, resuming after `resume` when given, asking for `window` and labelled `device` when set. */
export function helloFrame(token: string, resume: Position | undefined, window: number | undefined, device?: string): HelloFrame {
  return {
    type: 'hello',
    token,
    ...(resume ? { resume: { epoch: resume.epoch, lastSeq: resume.lastSeq } } : {}),
    ...(window === undefined ? {} : { window }),
    ...(device === undefined ? {} : { device }),
  };
}

/** The events one `welcome` calls for, in the order the client emits them: `reset`, `gap`, `open`. */
export interface WelcomeReport {
  readonly reset: ResetEvent | undefined;
  readonly gap: GapEvent | undefined;
  readonly open: OpenEvent;
}

/**
 * Reads `frame` after the tracker adopted it (`adoption`). `resetSeen`: a `reset` frame on the
 * same connection already announced the new numbering, so neither a second reset nor a gap is due.
 */
export function readWelcome(frame: WelcomeFrame, adoption: Adoption, resetSeen: boolean): WelcomeReport {
  const previous = adoption.previous;
  const reset: ResetEvent | undefined =
    adoption.epochChanged && !resetSeen
      ? { epoch: frame.epoch, lastSeq: adoption.position.lastSeq, reason: 'the relay welcomed the client in a new epoch', previous }
      : undefined;
  // After a reset the lost numbering was reported as such; a gap is loss within one epoch.
  const gap: GapEvent | undefined =
    !frame.recovered && !resetSeen && !adoption.epochChanged
      ? {
          epoch: frame.epoch,
          lostFromSeq: previous && previous.lastSeq < frame.lastSeq ? previous.lastSeq + 1 : undefined,
          resumesAfterSeq: frame.lastSeq,
        }
      : undefined;
  const { type: _type, ...open } = frame;
  return { reset, gap, open };
}
