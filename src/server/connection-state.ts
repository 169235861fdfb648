/**
 * The states of one client connection on the relay and the transitions between them.
 *
 * ```
 * awaiting-hello ──hello──▶ authenticating ──token valid──▶ attaching ──stream attached, welcome sent──▶ open
 *       │                         │                            │                                         │
 *       └── bad hello, hello timeout, auth failure, attach refused, close, terminate, socket closed ─────┘
 *                                    ──▶ closed (final)
 * ```
 *
 * `authenticating` lasts while the token's key is looked up (a JWKS fetch for a kid not cached);
 * frames that arrive meanwhile wait, as in `attaching`.
 *
 * `closed` is entered exactly once, whatever ends the connection; that transition is where the
 * connection detaches from its stream and reports `connection-closed`.
 */

export type ConnectionState = 'awaiting-hello' | 'authenticating' | 'attaching' | 'open' | 'closed';

const TRANSITIONS: Readonly<Record<ConnectionState, readonly ConnectionState[]>> = {
  'awaiting-hello': ['authenticating', 'closed'],
  authenticating: ['attaching', 'closed'],
  attaching: ['open', 'closed'],
  open: ['closed'],
  closed: [],
};

/** Whether a connection may move from `from` to `to`. */
export function canTransition(from: ConnectionState, to: ConnectionState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Thrown on a transition the table does not allow: a bug in the relay, never a client's doing. */
export class IllegalTransitionError extends Error {
  constructor(
    readonly from: ConnectionState,
    readonly to: ConnectionState,
  ) {
    super(`client connection: illegal transition ${from} -> ${to}`);
    this.name = 'IllegalTransitionError';
  }
}

/** The state `to`, after checking that the table allows it from `from`. */
export function nextState(from: ConnectionState, to: ConnectionState): ConnectionState {
  if (!canTransition(from, to)) throw new IllegalTransitionError(from, to);
  return to;
}
