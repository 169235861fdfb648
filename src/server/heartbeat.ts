/**
 * WebSocket ping/pong liveness of one connection, and the interval of the sweep that drives it.
 *
 * Guarantee: a connection is declared dead on the first beat that finds the ping of the previous
 * beat unanswered, so a client that stopped answering is dropped between one and two heartbeats
 * after its last pong (PROTOCOL.md, section 10). Pure: the caller sends the ping and ends the
 * connection.
 */

/** What the heartbeat sweep does with a connection on this beat. */
export type BeatAction = 'ping' | 'terminate';

export class PongLiveness {
  private awaitingPong = false;

  /** A pong arrived: the last ping was answered. */
  pong(): void {
    this.awaitingPong = false;
  }

  /** One heartbeat: `terminate` if the previous ping went unanswered, else `ping` (and wait for its pong). */
  beat(): BeatAction {
    if (this.awaitingPong) return 'terminate';
    this.awaitingPong = true;
    return 'ping';
  }
}
