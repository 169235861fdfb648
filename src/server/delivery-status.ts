/**
 * The delivery state one connection shows in `status` frames: degraded while its user's stream or
 * its node has a cause (consumer lost, store down; breaker open, broker blocked), ok when neither
 * does. A frame is due only when that combined state changes, so a client never sees two `ok`s
 * or two `degraded`s in a row.
 */
import type { StatusFrame } from '../protocol/frames.js';

export type StatusSource = 'stream' | 'node';

/** Longest `reason` sent to a client. */
const MAX_REASON = 200;

export class DeliveryStatus {
  private readonly causes = new Map<StatusSource, string>();
  private shown: StatusFrame['state'] = 'ok';

  /** Records (or clears, with undefined) the cause from one source. */
  set(source: StatusSource, reason: string | undefined): void {
    if (reason === undefined) this.causes.delete(source);
    else this.causes.set(source, reason);
  }

  /** The `status` frame to send now, if the combined state changed since the last one. */
  change(): StatusFrame | undefined {
    const reason = this.causes.values().next().value;
    const state = reason === undefined ? 'ok' : 'degraded';
    if (state === this.shown) return undefined;
    this.shown = state;
    return reason === undefined ? { type: 'status', state } : { type: 'status', state, reason: reason.slice(0, MAX_REASON) };
  }
}
