/**
 * Routes a connection's reports to the client only while that connection is the client's
 * current one: a connection the client has replaced, or closed and forgotten, can no longer
 * move its position, state or consumers.
 *
 * Guarantees: every report but `closed` reaches the handlers only while `current()` is this
 * connection; `closed` reaches them while it is current, and also when the connection failed
 * inside its constructor, before it could become current (the handler then gets `undefined`).
 */
import type { ErrorFrame, MsgFrame, ResetFrame, StatusFrame, WelcomeFrame } from '../protocol/frame-types.js';
import type { Connection, ConnectionListener } from './connection.js';
import type { InboxClientError } from './errors.js';

/** What the client does with the reports of its current connection. */
export interface CurrentConnectionHandlers {
  welcome(connection: Connection, frame: WelcomeFrame): void;
  message(connection: Connection, frame: MsgFrame): void;
  reset(connection: Connection, frame: ResetFrame): void;
  status(frame: StatusFrame): void;
  serverError(connection: Connection, frame: ErrorFrame): void;
  protocolError(error: InboxClientError): void;
  closed(connection: Connection | undefined, code: number, reason: string): void;
}

/**
 * The listener for one connection. `self` returns that connection (read through a closure: its
 * constructor may report a close before it returns); `current` returns the client's current one.
 */
export function currentConnectionListener(
  self: () => Connection | undefined,
  current: () => Connection | undefined,
  handlers: CurrentConnectionHandlers,
): ConnectionListener {
  const ifCurrent = (): Connection | undefined => {
    const connection = self();
    return connection !== undefined && connection === current() ? connection : undefined;
  };
  return {
    welcome: (frame) => {
      const connection = ifCurrent();
      if (connection) handlers.welcome(connection, frame);
    },
    message: (frame) => {
      const connection = ifCurrent();
      if (connection) handlers.message(connection, frame);
    },
    reset: (frame) => {
      const connection = ifCurrent();
      if (connection) handlers.reset(connection, frame);
    },
    status: (frame) => {
      if (ifCurrent()) handlers.status(frame);
    },
    serverError: (frame) => {
      const connection = ifCurrent();
      if (connection) handlers.serverError(connection, frame);
    },
    protocolError: (error) => {
      if (ifCurrent()) handlers.protocolError(error);
    },
    closed: (code, reason) => {
      const connection = self();
      // The constructor may fail the socket synchronously, before the client could make it current.
      if (connection === undefined || connection === current()) handlers.closed(connection, code, reason);
    },
  };
}
