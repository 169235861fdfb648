/**
 * WebSocket ping/pong liveness of one connection, and the interval of the sweep that drives it.
 *
 * Guarantee: a connection is declared dead on the first beat that finds the ping of the previous
 * beat unanswered, so a client that stopped answering is dropped between one and two heartbeats
 * after its last pong (PROTOCOL.md, section 10). Only the answer to the outstanding ping counts:
 * every ping carries a fresh random payload and a pong counts only when it echoes it (RFC 6455,
 * section 5.5.3). A pong sent unsolicited, before any ping, or with another payload, proves
 * nothing, and a client cannot answer without reading the ping off its socket. Pure: the caller
 * sends the ping and ends the connection.
 */
import { randomBytes } from 'node:crypto';

/** What the heartbeat sweep does with a connection on this beat: send a ping with `payload`, or cut it. */
export type Beat = { action: 'ping'; payload: string } | { action: 'terminate' };

/** 8 random bytes in hex: unguessable, and well under the 125-byte limit of a control frame. */
function randomPayload(): string {
  return randomBytes(8).toString('hex');
}

export class PongLiveness {
  /** The payload of the ping sent and not yet answered. */
  private outstanding: string | undefined;

  constructor(private readonly nextPayload: () => string = randomPayload) {}

  /** A pong arrived with `payload`: it answers the outstanding ping only if it echoes its payload. */
  pong(payload: string): void {
    if (this.outstanding !== undefined && payload === this.outstanding) this.outstanding = undefined;
  }

  /** One heartbeat: `terminate` if the previous ping went unanswered, else a new ping to send (and wait for its pong). */
  beat(): Beat {
    if (this.outstanding !== undefined) return { action: 'terminate' };
    this.outstanding = this.nextPayload();
    return { action: 'ping', payload: this.outstanding };
  }
}
