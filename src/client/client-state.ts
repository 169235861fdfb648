/**
 * The client's connection states and the transitions between them.
 *
 * ```
 * idle ──connect()──▶ connecting ──welcome──▶ open
 *                      │    ▲                  │
 *          close/fail  │    │ backoff elapsed   │ recoverable close, dead connection
 *                      ▼    │                  ▼
 *                    reconnecting ◀────────────┘
 * any state ──close(), 1000, terminal code──▶ closed (final)
 * ```
 */

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

const TRANSITIONS: Readonly<Record<ClientState, readonly ClientState[]>> = {
  idle: ['connecting', 'closed'],
  connecting: ['open', 'reconnecting', 'closed'],
  open: ['reconnecting', 'closed'],
  reconnecting: ['connecting', 'closed'],
  closed: [],
};

/** Whether the client may move from `from` to `to`. */
export function canTransition(from: ClientState, to: ClientState): boolean {
  return TRANSITIONS[from].includes(to);
}
